"""The directory collection (the embedded default): DuckDB + FAISS + the BM25 payload in one folder."""
