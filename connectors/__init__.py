"""Reading sources (files, folders, ...) into :class:`rag.Doc` objects (``rag.connectors``)."""
