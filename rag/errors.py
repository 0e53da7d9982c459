"""Errors raised by pilotfish.

Every error is a :class:`RagError`. A message says what was wrong, what was received and what to do.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error pilotfish raises on purpose."""


class MissingDependencyError(RagError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        cmd = f"pip install 'pilotfish[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"the package {package!r} is not installed{what}; install it with: {cmd}")
        self.package = package


class ConfigError(RagError, ValueError):
    """A parameter or setting is invalid (bad k, unknown mode, unknown filter field, ...)."""


class QueryError(RagError, ValueError):
    """A query cannot be run as given (empty or whitespace-only text, ...)."""


class IndexFormatError(RagError):
    """A path is not a collection, or its files are of another format, encoder or dimension, or tampered."""


class CollectionLockedError(RagError):
    """Another writer holds the collection's write lock."""


class StoreUnavailableError(RagError):
    """A database store cannot be reached or lacks what it needs (server down, connection lost, no pgvector)."""


class DocumentNotFoundError(RagError, KeyError):
    """A document id asked for is not in the collection."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class SourceError(RagError):
    """A source (file, folder, URL) cannot be read; the message names it and says why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickles across the file-reader process
        return (type(self), (self.source, self.reason))


class UnsafeQueryError(RagError):
    """A generated query (SQL, tool call) was rejected by a validator."""


class GenerationError(RagError):
    """The LLM could not produce an answer (server down, error status, malformed reply, broken stream)."""
