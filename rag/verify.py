"""Deprecated alias of :mod:`rag.models.verify` (moved in 0.1; the README showed
``rag.verify``). Use ``from rag import NLIVerifier``; this alias goes in pilotfish 0.3."""

import warnings

from rag.models.verify import *  # noqa: F403
from rag.models.verify import NLIVerifier  # noqa: F401

warnings.warn(
    "rag.verify moved to rag.models.verify; use `from rag import NLIVerifier`", DeprecationWarning, stacklevel=2
)
