"""The backend services behind the gateway: retrieval (Qdrant) and generation (vLLM)."""
