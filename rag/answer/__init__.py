"""Answering: the pipeline, its policy, the trace ledger, routing, prompts, the cascade."""
