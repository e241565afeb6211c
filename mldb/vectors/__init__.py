"""EMBED and FAISS vector indexes."""
