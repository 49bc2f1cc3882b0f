"""Retrieval service: documents in (chunked, embedded, stored in Qdrant), passages out."""
