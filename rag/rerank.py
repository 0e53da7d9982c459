"""Deprecated alias of :mod:`rag.models.rerank` (moved in 0.1; the README showed
``rag.rerank``). Use ``from rag import CrossEncoderReranker, Reranked``; this alias goes in pilotfish 0.3."""

import warnings

from rag.models.rerank import *  # noqa: F403
from rag.models.rerank import CrossEncoderReranker, Reranked  # noqa: F401

warnings.warn(
    "rag.rerank moved to rag.models.rerank; use `from rag import CrossEncoderReranker, Reranked`",
    DeprecationWarning,
    stacklevel=2,
)
