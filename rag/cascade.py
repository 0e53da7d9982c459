"""Deprecated alias of :mod:`rag.answer.cascade` (moved in 0.1; the README showed
``rag.cascade``). Use ``from rag import Cascade, Extractive``; this alias goes in pilotfish 0.3."""

import warnings

from rag.answer.cascade import *  # noqa: F403
from rag.answer.cascade import Cascade, Extractive  # noqa: F401

warnings.warn(
    "rag.cascade moved to rag.answer.cascade; use `from rag import Cascade, Extractive`",
    DeprecationWarning,
    stacklevel=2,
)
