"""Which trained models a collection uses by default, and on what evidence.

Training a model does not put it to use. A trainer measures the model against the unadapted pipeline on
queries it did not train on, and records its decision in the collection: ``<collection>/models/adopted.json``::

    {"adopted": {"reranker": {"name": "default", "checksum": "...", "at": "2026-12-03T14:02:11+00:00",
                              "by": "rag train reranker", "evidence": {"before": 0.716, "after": 0.741, ...}}},
     "decisions": [{"task": "reranker", "name": "default", "adopted": true, "reason": "...", ...}, ...]}

``adopted`` names, per task, the model the pipeline uses when none is named (``RAG.from_collection``, ``rag ask``,
``rag serve``, ``rag eval retrieval``, ``rag search --rerank auto``); ``decisions`` keeps every decision, newest
last, rejections with their reason. An adoption holds the model manifest's checksum: a model replaced since
(trained again under the same name) is not used until a decision adopts the new one.

Example:
    >>> record(kb.path, "reranker", "default", manifest, True, "beats hybrid", {"before": 0.71, "after": 0.74})
    ... # doctest: +SKIP
    >>> adopted_model(kb.path, "reranker")                                                     # doctest: +SKIP
    'default'
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rag.checks import json_digest
from rag.models.registry import committed_model, model_dir, read_model_manifest

FILE = "adopted.json"


def _path(collection: str | Path) -> Path:
    return Path(collection) / "models" / FILE


def read(collection: str | Path | None) -> dict[str, Any]:
    """The collection's adoption record (empty when it has none, or has no model folder)."""
    if collection is None or not _path(collection).is_file():
        return {"adopted": {}, "decisions": []}
    try:
        data = json.loads(_path(collection).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"adopted": {}, "decisions": []}  # a damaged record adopts nothing; the next decision rewrites it
    return (
        data if isinstance(data, dict) and isinstance(data.get("adopted"), dict) else {"adopted": {}, "decisions": []}
    )


def record(
    collection: str | Path,
    task: str,
    name: str,
    manifest: dict[str, Any],
    adopt: bool,
    reason: str,
    evidence: dict[str, Any],
    by: str = "rag train",
    withdraw: bool = True,
) -> dict[str, Any]:
    """Record a decision about the model ``name`` of ``task`` (its ``manifest`` as written); an adoption replaces
    the task's adopted model, a rejection of the adopted model's name withdraws it unless ``withdraw`` is false
    (``rag adapt`` rejects a candidate that never replaced the adopted files). Returns the decision."""
    data = read(collection)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    decision = {
        "task": task,
        "name": name,
        "adopted": adopt,
        "reason": reason,
        "at": at,
        "by": by,
        "evidence": evidence,
    }
    if adopt:
        data["adopted"][task] = {"name": name, "checksum": manifest.get("checksum"), "at": at, "by": by,
                                 "evidence": evidence}  # fmt: skip
    elif withdraw and data["adopted"].get(task, {}).get("name") == name:
        del data["adopted"][task]
    data["decisions"] = [*data.get("decisions", []), decision][-200:]
    path = _path(collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # readers see the old record or the new one, never half of one
    return decision


def adopted_model(collection: str | Path | None, task: str) -> str | None:
    """The name of the model of ``task`` the collection adopted, when it is still the model that was measured."""
    entry = read(collection)["adopted"].get(task)
    if collection is None or not entry:
        return None
    path = committed_model(model_dir(task, entry["name"], collection))
    if path is None:
        return None
    manifest = read_model_manifest(path, task, verify=False)
    if entry.get("checksum") and manifest.get("checksum", json_digest(manifest)) != entry["checksum"]:
        return None  # trained again since the decision
    return str(entry["name"])
