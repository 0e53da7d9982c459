"""Deprecated alias of :mod:`rag.tools.builtin` (moved in 0.1; the README showed
``rag.tools_builtin``). Use ``from rag.tools.builtin import BUILTIN_TOOLS``; this alias goes in pilotfish 0.3."""

import warnings

from rag.tools.builtin import *  # noqa: F403
from rag.tools.builtin import BUILTIN_TOOLS  # noqa: F401

warnings.warn(
    "rag.tools_builtin moved to rag.tools.builtin; use `from rag.tools.builtin import BUILTIN_TOOLS`",
    DeprecationWarning,
    stacklevel=2,
)
