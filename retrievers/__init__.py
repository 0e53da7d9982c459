"""Retrievers (``rag.retrievers``): bm25, dense, hybrid fusion. Each satisfies the Retriever protocol."""
