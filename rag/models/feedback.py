"""What a bot's users say of its answers, kept in the collection: ``<collection>/models/feedback.jsonl``.

One judgement per line: the question, the answer's id (``/ask`` returns one), the document a citation pointed to
(or none, for the answer as a whole) and whether it was useful::

    {"at": "2026-12-03T15:02:11+00:00", "question": "how often do keys rotate?", "answer_id": "9f1c...",
     "doc_id": "security.md", "useful": true}

``rag adapt`` turns judgements on cited documents into labels next to its pseudo-queries (:func:`labels`):
a useful document is a positive of its question, a document judged not useful a negative. A judgement of the whole
answer is kept (``rag serve`` counts it) but names no document, so it labels nothing. Lines are appended whole
under a lock, and a line that cannot be read is skipped, so a crash mid-write loses at most that judgement.

Example:
    >>> record(kb.model_root, "how often do keys rotate?", True, doc_id="security.md")   # doctest: +SKIP
    >>> labels(kb.model_root)                                                             # doctest: +SKIP
    ({'fb0': 'how often do keys rotate?'}, {'fb0': {'security.md': 1}})
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

FILE = "feedback.jsonl"
_lock = threading.Lock()


def path_of(collection: str | Path) -> Path:
    return Path(collection) / "models" / FILE


def record(
    collection: str | Path, question: str, useful: bool, *, answer_id: str | None = None, doc_id: str | None = None
) -> dict[str, Any]:
    """Append one judgement; returns it as stored."""
    entry = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "question": question,
        "answer_id": answer_id,
        "doc_id": doc_id,
        "useful": bool(useful),
    }
    path = path_of(collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    with _lock, path.open("a", encoding="utf-8") as f:
        f.write(line)
    return entry


def read(collection: str | Path | None) -> list[dict[str, Any]]:
    """Every readable judgement, oldest first (none when the collection has no feedback)."""
    if collection is None or not path_of(collection).is_file():
        return []
    out = []
    for line in path_of(collection).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut off by a crash
        if isinstance(entry, dict) and isinstance(entry.get("question"), str) and "useful" in entry:
            out.append(entry)
    return out


def labels(collection: str | Path | None) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(questions by id, labels by question id and document id) from judgements of cited documents; the newest
    judgement of a (question, document) pair wins."""
    qid: dict[str, str] = {}
    out: dict[str, dict[str, int]] = {}
    for entry in read(collection):
        doc = entry.get("doc_id")
        question = " ".join(str(entry["question"]).split())
        if not doc or not question:
            continue
        key = qid.setdefault(question, f"fb{len(qid)}")
        out.setdefault(key, {})[str(doc)] = 1 if entry["useful"] else 0
    return {v: k for k, v in qid.items() if v in out}, out
