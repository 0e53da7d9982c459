"""What every reader shares: an input that was skipped, with its reason, and bytes read as text."""

from __future__ import annotations

from dataclasses import dataclass

from rag.errors import SourceError


@dataclass(frozen=True)
class Skipped:
    """A file (or a line of one) that was not indexed, and why."""

    path: str
    reason: str


def decode_text(data: bytes, rel: str) -> str:
    """``data`` as UTF-8 text (a BOM dropped); :class:`SourceError` naming ``rel`` for binary or non-UTF-8 data."""
    if b"\x00" in data[:8192]:
        raise SourceError(rel, "binary content (NUL bytes), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(rel, f"not valid UTF-8 (byte {e.start}); convert it to UTF-8") from e
