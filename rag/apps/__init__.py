"""The applications: the ``rag`` command line, the HTTP server, the OpenAI-compatible LLM server."""
