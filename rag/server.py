"""Deprecated alias of :mod:`rag.apps.server.app` (moved in 0.1; the README showed
``rag.server``). Use ``from rag.apps.server.app import create_app``; this alias goes in pilotfish 0.3."""

import warnings

from rag.apps.server.app import *  # noqa: F403
from rag.apps.server.app import create_app  # noqa: F401

warnings.warn(
    "rag.server moved to rag.apps.server.app; use `from rag.apps.server.app import create_app`",
    DeprecationWarning,
    stacklevel=2,
)
