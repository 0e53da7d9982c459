"""The small models' inference: registry, encoders, reranker, verifier, decomposers, LLM clients."""
