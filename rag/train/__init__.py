"""Training the small models (reranker, verifier, decomposer); inference never imports this package."""
