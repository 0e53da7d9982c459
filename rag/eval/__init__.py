"""Evaluation metrics: retrieval (nDCG, recall, MRR, MAP) and QA (exact match, token F1)."""
