"""Deprecated alias of :mod:`rag.retrievers.multihop` (moved in 0.1; the README showed
``rag.multihop``). Use ``from rag import MultiHopRetriever``; this alias goes in pilotfish 0.3."""

import warnings

from rag.retrievers.multihop import *  # noqa: F403
from rag.retrievers.multihop import MultiHopRetriever  # noqa: F401

warnings.warn(
    "rag.multihop moved to rag.retrievers.multihop; use `from rag import MultiHopRetriever`",
    DeprecationWarning,
    stacklevel=2,
)
