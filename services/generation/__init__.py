"""Generation service: vLLM's own OpenAI-compatible server, started and configured by ragft,
serving the base model and every LoRA adapter in the adapters folder."""
