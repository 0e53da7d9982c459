"""Building, updating, saving and loading indexes; chunking; the document store (``rag.indexers``)."""
