"""Training data for rerankers: labelled pairs, BEIR qrels, or synthesised queries, and mined negatives.

Every source ends as groups of (query, one positive, n negatives: hard ones plus a few random documents,
which give a cross-encoder started from a bi-encoder a learning signal from the first steps). Hard negatives
are mined from the collection: the top of BM25 and dense retrieval minus the positives, preferring passages on
which the two retrievers disagree (ranked high by one, outside the other's top ``depth``) — the passages a
first stage gets wrong and a reranker must fix. With no dense index, BM25's top non-positives are used.

Synthesis (InPars / GPL style): the configured LLM writes a query for each sampled chunk (few-shot prompt);
a query is kept only if first-stage retrieval finds its chunk in the top ``roundtrip_k`` (round-trip filter).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.datasets import load_queries, read_qrels
from rag.errors import ConfigError, SourceError
from rag.eval.retrieval import parent_id
from rag.models.rerank import passage_text
from rag.retrievers.hybrid import fuse
from rag.train.loop import Group
from rag.types import Hit

SYNTH_SYSTEM = "You write the search query a user would type to find the given passage. Reply with the query only."
SYNTH_SHOTS = (
    (
        "The Amazon rainforest covers about 5.5 million square kilometres and spans nine countries, most of it in "
        "Brazil.",
        "how large is the amazon rainforest",
    ),
    (
        "Metformin lowers blood glucose mainly by reducing hepatic glucose production and is the first-line drug "
        "for type 2 diabetes.",
        "how does metformin lower blood sugar",
    ),
)


# ---------------------------------------------------------------------------------------------- sources
def read_pairs(path: str | Path, kb: Any) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, str]]:
    """Read labelled pairs: JSONL ``{"query", "doc_id" | "passage", "label"}`` or TSV ``query, doc_id|passage,
    label``. Returns (queries by id, labels by query id and passage key, passage texts by key for free text).

    Raises:
        SourceError: unreadable file, bad line (named by number), unknown doc id, empty text, no positives.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(str(path), "no such pairs file")
    known = set(kb.ids())
    queries: dict[str, str] = {}
    labels: dict[str, dict[str, int]] = {}
    texts: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    for where, q, ref, passage, label in _pair_records(path, known):
        if not isinstance(q, str) or not q.strip():
            raise SourceError(where, "empty query")
        try:
            lab = int(float(label))
        except (TypeError, ValueError) as e:
            raise SourceError(where, f"label {label!r} is not a number") from e
        if ref is not None:
            if str(ref) not in known:
                raise SourceError(where, f"unknown doc_id {ref!r}: not in the collection")
            key = str(ref)
        elif isinstance(passage, str) and passage.strip():
            key = f"text:{len(texts)}"
            texts[key] = passage
        else:
            raise SourceError(where, "needs a doc_id of the collection or a non-empty passage")
        qid = qid_of.setdefault(q, f"q{len(qid_of)}")
        queries[qid] = q
        labels.setdefault(qid, {})[key] = lab
    if not any(v > 0 for d in labels.values() for v in d.values()):
        raise SourceError(str(path), "no positive pairs (label > 0); a reranker needs positives to learn from")
    return queries, labels, texts


def _pair_records(path: Path, known: set[str]) -> Iterator[tuple[str, Any, Any, Any, Any]]:
    """(where, query, doc_id, passage, label) per line of a JSONL or TSV/CSV pairs file."""
    with path.open(encoding="utf-8") as f:
        if path.suffix.lower() in (".jsonl", ".json"):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceError(f"{path}:{n}", f"not valid JSON ({e.msg}); expected one object per line") from e
                if not isinstance(rec, dict):
                    raise SourceError(f"{path}:{n}", 'expected an object {"query", "doc_id" or "passage", "label"}')
                yield f"{path}:{n}", rec.get("query"), rec.get("doc_id"), rec.get("passage"), rec.get("label", 1)
            return
        for n, row in enumerate(csv.reader(f, delimiter="," if path.suffix.lower() == ".csv" else "\t"), 1):
            if not row or (n == 1 and row[0].strip().lower() == "query"):
                continue
            if len(row) not in (2, 3):
                raise SourceError(
                    f"{path}:{n}", f"expected 2 or 3 columns (query, doc_id or passage, label), got {len(row)}"
                )
            label = row[2] if len(row) == 3 else 1
            ref, passage = (row[1], None) if row[1] in known else (None, row[1])
            yield f"{path}:{n}", row[0], ref, passage, label


def read_qrels_source(
    path: str | Path, kb: Any, split: str = "train"
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and qrels of a BEIR folder's ``split``, checked against the collection's ids."""
    path = Path(path)
    qf = path / "qrels" / f"{split}.tsv"
    if not qf.is_file():
        raise SourceError(str(qf), f"no qrels for split {split!r}; pass a BEIR folder with qrels/{split}.tsv")
    qrels = read_qrels(qf)
    queries = load_queries(path / "queries.jsonl")
    known = set(kb.ids())
    missing_q = [q for q in qrels if q not in queries]
    if missing_q:
        raise SourceError(str(qf), f"query ids not in queries.jsonl: {missing_q[:5]}")
    unknown = sorted({d for rel in qrels.values() for d in rel} - known)
    if len(unknown) == sum(len(r) for r in qrels.values()):
        raise SourceError(str(qf), f"none of the judged documents is in the collection (e.g. {unknown[:3]})")
    return {q: queries[q] for q in qrels}, qrels


def synthesize(
    kb: Any,
    n: int,
    generator: Any,
    roundtrip_k: int = 10,
    seed: int = 0,
    batch: int = 8,
    progress: bool = True,
    among: list[str] | None = None,
) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, int]]:
    """LLM-written queries for ``n`` sampled chunks (of the documents ``among``, default all), kept when retrieval
    finds the chunk in the top ``roundtrip_k``. Returns (queries, qrels by parent document, counts of generated /
    kept)."""
    from tqdm import tqdm

    ids = kb.ids() if among is None else among
    if not ids:
        raise ConfigError(f"collection {kb.location} is empty; index documents before --synthesize")
    rng = random.Random(seed)
    chosen = rng.sample(ids, min(n, len(ids)))
    chunks = {d: kb.get([d]) for d in chosen}
    picks = [(d, rng.choice(c)) for d, c in chunks.items() if c]
    retriever = kb.retriever("hybrid" if kb.has_dense else "bm25")
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    generated = 0
    for i in tqdm(range(0, len(picks), batch), desc="writing queries", unit="batch", disable=not progress):
        part = picks[i : i + batch]
        prompts = [_synth_prompt(passage_text(Hit(c, 0.0, ""))) for _, c in part]
        for (doc_id, _chunk), text in zip(part, _write_queries(generator, prompts), strict=True):
            q = _clean_query(text)
            generated += 1
            if not q:
                continue
            if doc_id in {parent_id(h) for h in retriever.retrieve(q, k=roundtrip_k)}:
                qid = f"synth{len(queries)}"
                queries[qid] = q
                qrels[qid] = {doc_id: 1}
    return queries, qrels, {"sampled": len(picks), "generated": generated, "kept": len(queries)}


def _write_queries(generator: Any, prompts: list[list[dict[str, str]]]) -> list[str]:
    """One query per prompt: in one batch where the generator can (the local model), else one by one (a server)."""
    batch = getattr(generator, "generate_batch", None)
    if callable(batch):
        return list(batch(prompts, max_new_tokens=40))
    return [generator.generate(p, max_new_tokens=40) for p in prompts]


def _synth_prompt(passage: str) -> list[dict[str, str]]:
    words = passage.split()
    passage = " ".join(words[:180])
    msgs = [{"role": "system", "content": SYNTH_SYSTEM}]
    for d, q in SYNTH_SHOTS:
        msgs += [{"role": "user", "content": f"Passage: {d}"}, {"role": "assistant", "content": q}]
    msgs.append({"role": "user", "content": f"Passage: {passage}"})
    return msgs


def _clean_query(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(query|search query|question)\s*:\s*", "", line, flags=re.I).strip(" \"'")
    return line if 3 <= len(line.split()) <= 40 else ""


# ---------------------------------------------------------------------------------------------- mining
def mine(
    kb: Any,
    queries: dict[str, str],
    labels: dict[str, dict[str, int]],
    texts: dict[str, str] | None = None,
    negatives: int = 3,
    random_negatives: int = 2,
    depth: int = 30,
    pool: int = 12,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, list[Group]], dict[str, list[Hit]]]:
    """Groups (query, positive, ``negatives`` negatives) per positive by query id, and each query's first-stage
    hits. Of the negatives, ``random_negatives`` are random documents: a cross-encoder started from a bi-encoder
    learns little in a few hundred CPU steps from hard negatives alone; easy ones give it a signal from the start."""
    from tqdm import tqdm

    texts = texts or {}
    rng = random.Random(seed)
    bm25 = kb.retriever("bm25")
    dense = kb.retriever("dense") if kb.has_dense else None
    all_ids = kb.ids()
    groups: dict[str, list[Group]] = {}
    candidates: dict[str, list[Hit]] = {}
    for qid, q in tqdm(queries.items(), desc="mining negatives", unit="query", disable=not progress):
        rel = labels.get(qid, {})
        pos = [d for d, v in rel.items() if v > 0]
        if not pos:
            continue
        b, d = bm25.retrieve(q, k=100), dense.retrieve(q, k=100) if dense is not None else []
        candidates[qid] = fuse([b, d], depth) if dense is not None else b[:depth]  # = kb's hybrid
        by_parent = {parent_id(h): h for h in [*b[:depth], *d[:depth]]}
        given = [texts.get(k) or _doc_text(kb, k, by_parent) for k, v in rel.items() if v <= 0]
        ordered = _disagreements(b[:depth], d[:depth], rel, depth) if dense is not None else list(by_parent)
        ordered = [p for p in ordered if p not in rel]
        hard = [t for t in given if t] + [passage_text(by_parent[p]) for p in ordered[:pool]]
        if len(hard) < negatives:  # small corpora: the retrievers find too few; add random documents
            spare = [x for x in rng.sample(all_ids, min(len(all_ids), 4 * negatives)) if x not in rel]
            hard += [t for t in (_doc_text(kb, x, by_parent) for x in spare if x not in by_parent) if t]
        if len(hard) < negatives:
            continue
        n_rand = min(random_negatives, negatives - 1)
        for p in pos:
            pos_text = texts.get(p) or _doc_text(kb, p, by_parent)
            if pos_text:
                easy = [_doc_text(kb, x, by_parent) for x in rng.sample(all_ids, min(len(all_ids), 3 * n_rand + 3))]
                easy = [t for t in easy if t and t != pos_text and t not in hard][:n_rand]
                negs_text = rng.sample(hard, negatives - len(easy)) + easy
                pairs = [(q, pos_text)] + [(q, t) for t in negs_text]
                groups.setdefault(qid, []).append(Group(pairs=tuple(pairs), label=0))
    if not groups:
        raise ConfigError(
            "no training groups could be built: no query had both a positive in the collection and "
            f"{negatives} negatives; check that the labels' doc ids are in the collection"
        )
    return groups, candidates


def _disagreements(b: list[Hit], d: list[Hit], rel: dict[str, int], depth: int) -> list[str]:
    """Documents of both runs, not labelled: first those ranked in one run's top 10 and missing from the other's
    top ``depth`` (the passages a first stage gets wrong), then the rest by their better rank."""
    rb = {parent_id(h): r for r, h in enumerate(b)}
    rd = {parent_id(h): r for r, h in enumerate(d)}
    negs = [p for p in {parent_id(h): h for h in [*b, *d]} if p not in rel]
    disagree = [p for p in negs if min(rb.get(p, depth), rd.get(p, depth)) < 10 and (p not in rb or p not in rd)]
    rest = sorted((p for p in negs if p not in disagree), key=lambda p: min(rb.get(p, depth), rd.get(p, depth)))
    return disagree + rest


def _doc_text(kb: Any, doc_id: str, retrieved: dict[str, Hit]) -> str:
    if doc_id in retrieved:
        return passage_text(retrieved[doc_id])
    chunks = kb.get([doc_id])
    return passage_text(Hit(chunks[0], 0.0, "")) if chunks else ""
