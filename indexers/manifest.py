"""Collection manifests and atomic file writes.

``manifest.json`` is written last, through a temporary file renamed into place, so a crash at any
point leaves the previous manifest, and so the previous payload files, in force.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rag.checks import json_digest, sha256_file
from rag.errors import IndexFormatError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
TYPE = "pilotfish.collection"
KEYS = frozenset(
    {"type", "format_version", "pilotfish_version", "generation", "created", "updated", "params", "encoder",
     "counts", "payloads", "store", "checksum"}
)  # fmt: skip


def write_manifest(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` as the collection's manifest (atomically, with its checksum); return what was written."""
    sealed = {**data, "checksum": json_digest(data)}
    write_json_atomic(path / MANIFEST, sealed)
    return sealed


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check a collection's manifest; raise :class:`IndexFormatError` with what to do."""
    mf = path / MANIFEST
    if not path.is_dir():
        raise IndexFormatError(
            f"{path} is not a collection (no such directory); create one with "
            f"`rag index DOCS --collection {path}` or Collection.create()"
        )
    if not mf.is_file():
        raise IndexFormatError(
            f"{path} is not a collection (no {MANIFEST}); create one with `rag index DOCS --collection {path}`"
        )
    try:
        data = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{mf} is unreadable ({e}); restore it or re-index the collection") from e
    damaged = IndexFormatError(
        f"{mf} fails its checksum: the file was changed or corrupted. Restore it from a backup, or re-index "
        f"the documents into a new collection (`rag index DOCS --collection NEW`)"
    )
    if isinstance(data, dict) and "checksum" in data and data["checksum"] != json_digest(data):
        raise damaged
    if not isinstance(data, dict) or data.get("type") != TYPE:
        raise IndexFormatError(f"{mf} is not a pilotfish collection manifest")
    if not set(data) <= KEYS:  # a manifest from before checksums has only known keys; a damaged key is unknown
        raise damaged
    if data.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format_version {data.get('format_version')!r}; this pilotfish reads "
            f"{FORMAT_VERSION}. Re-index the documents with this version."
        )
    return data


def verify_payload(path: Path, entry: dict[str, Any]) -> Path:
    """Check one payload file against its manifest entry; return its path."""
    f = path / entry["file"]
    if not f.is_file():
        raise IndexFormatError(f"payload {f} is missing; rebuild the indexes with `rag reindex --collection {path}`")
    digest = sha256_file(f)
    if digest != entry["sha256"]:
        raise IndexFormatError(
            f"payload {f} fails its checksum (sha256 {digest[:12]}..., manifest says "
            f"{entry['sha256'][:12]}...): the file was changed or corrupted. Rebuild the indexes with "
            f"`rag reindex --collection {path}` (documents are kept in store.duckdb)."
        )
    return f
