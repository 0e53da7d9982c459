"""``rag serve``: the HTTP API, the OpenAI-compatible chat endpoint and the chat page."""
