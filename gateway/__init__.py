"""The gateway (:8000): one OpenAI-compatible endpoint; a header picks rag, finetuned, hybrid or auto."""
