"""Data loaders: BEIR-format folders (corpus, queries, qrels) and the answers of a QA folder.

A BEIR folder holds ``corpus.jsonl[.gz]`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id",
"text"}``) and ``qrels/<split>.tsv`` (query-id, corpus-id, score); a QA folder adds ``answers.jsonl``
(``{"_id", "answers": [...]}``). Evaluation (:mod:`rag.eval`) and training (:mod:`rag.train`) read them here.

Example:
    >>> data = load_beir("../shared/data/scifact", "test")  # doctest: +SKIP
    >>> len(data.corpus), len(data.queries)                 # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import SourceError
from rag.types import Doc

Qrels = dict[str, dict[str, int]]


@dataclass
class BeirDataset:
    """A BEIR dataset: corpus documents, queries by id, and relevance judgments."""

    corpus: list[Doc]
    queries: dict[str, str]
    qrels: Qrels


def _open_text(path: Path) -> Iterable[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from f
    else:
        with open(path, encoding="utf-8") as f:
            yield from f


def read_qrels(path: str | Path) -> Qrels:
    qrels: Qrels = {}
    for n, line in enumerate(_open_text(Path(path))):
        parts = line.rstrip("\n").split("\t")
        if n == 0 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if len(parts) < 3:
            if line.strip():
                raise SourceError(f"{path}:{n + 1}", "a qrels line needs query-id, corpus-id and score (tab-separated)")
            continue
        qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
    return qrels


def load_queries(path: str | Path) -> dict[str, str]:
    """Queries by id from a BEIR ``queries.jsonl``."""
    queries = {}
    for n, line in enumerate(_open_text(Path(path)), 1):
        if line.strip():
            try:
                obj = json.loads(line)
                queries[str(obj["_id"])] = str(obj["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SourceError(f"{path}:{n}", f'expected {{"_id", "text"}} ({e})') from e
    return queries


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Read ``corpus.jsonl[.gz]``, ``queries.jsonl`` and ``qrels/{split}.tsv`` from a BEIR folder."""
    root = Path(path)
    corpus_file = next((root / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (root / n).exists()), None)
    qrels_file = root / "qrels" / f"{split}.tsv"
    if corpus_file is None or not (root / "queries.jsonl").exists() or not qrels_file.exists():
        raise SourceError(str(root), f"not a BEIR folder: needs corpus.jsonl[.gz], queries.jsonl, qrels/{split}.tsv")
    corpus = []
    for line in _open_text(corpus_file):
        if line.strip():
            obj = json.loads(line)
            meta = {"title": obj["title"]} if obj.get("title") else {}
            corpus.append(Doc(text=obj.get("text", ""), id=str(obj["_id"]), meta=meta))
    qrels = read_qrels(qrels_file)
    queries = {q: t for q, t in load_queries(root / "queries.jsonl").items() if q in qrels}
    return BeirDataset(corpus, queries, {q: r for q, r in qrels.items() if q in queries})


def load_answers(path: str | Path) -> dict[str, list[str]]:
    """``answers.jsonl`` of a QA folder: ``{"_id": ..., "answers": [...]}`` per line."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
                out[str(obj["_id"])] = [str(a) for a in obj["answers"]]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SourceError(f"{path}:{n}", f'expected {{"_id", "answers": [...]}} ({e})') from e
    return out
