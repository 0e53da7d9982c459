"""Pseudo-queries made from a collection's own text, and a first stage that cannot cheat on them.

A pseudo-query is a span of a document used as a query for that document: one of its sentences (the inverse cloze
task of Lee et al. 2019) or its title (a heading against its section); for a document that offers neither (text
without punctuation, such as NFCorpus's preprocessed abstracts), a window of 8-16 words (Contriever's cropping). The
span is removed from the document it
came from (ICT's masking): otherwise a reranker learns to spot copied words, and any first stage finds the document
by those words, so a gate measured on such queries would say nothing.

:class:`Shadow` is that first stage: BM25 and dense retrieval over a copy of the collection's chunks (all of them up
to ``max_chunks``, else a sample that keeps every source document), in which each pseudo-query's span is removed
from its document, fused as the collection's hybrid is. It offers what :func:`rag.train.reranker_data.mine` and the
gate need of a collection (``retriever``, ``has_dense``, ``ids``, ``get``), so training negatives and held-out
candidates come from the same first stage the reranker will sit behind.

Example:
    >>> doc = Doc("Vitamin D lowers falls. It was a large trial.", id="d1#0", meta={"parent": "d1", "title": "Falls"})
    >>> p = Pseudo("p0", "Vitamin D lowers falls.", "d1", "sentence", "Vitamin D lowers falls.")
    >>> mask(doc, p).text
    'It was a large trial.'
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.indexers.store import index_text
from rag.retrievers.bm25_index import BM25Index
from rag.retrievers.hybrid import fuse
from rag.text.sentences import split_sentences
from rag.types import Doc, Hit

SOURCES = ("sentence", "title", "crop")
SENTENCE_WORDS = (6, 40)
TITLE_WORDS = (3, 30)
CROP_WORDS = (8, 16)


@dataclass(frozen=True)
class Pseudo:
    """A pseudo-query: ``query`` is ``span`` (a sentence or the title) of the document ``doc``."""

    qid: str
    query: str
    doc: str
    source: str
    span: str

    def to_dict(self) -> dict[str, str]:
        return dict(vars(self))


def _parent(chunk: Doc) -> str:
    return str(chunk.meta.get("parent", chunk.id))


def by_document(chunks: Sequence[Doc]) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {}
    for c in chunks:
        out.setdefault(_parent(c), []).append(c)
    return out


def _words_between(text: str, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= len(text.split()) <= bounds[1]


def pseudo_queries(docs: dict[str, list[Doc]], n: int, sources: Sequence[str] = SOURCES, seed: int = 0) -> list[Pseudo]:
    """One pseudo-query for each of up to ``n`` sampled documents, its source drawn among those the document
    offers (a title of 3-30 words; a sentence of 6-40 words of a random chunk; failing both, a crop)."""
    unknown = set(sources) - set(SOURCES)
    if unknown or not sources:
        raise ConfigError(f"unknown pseudo-query source(s) {sorted(unknown) or '(none)'}; use {', '.join(SOURCES)}")
    rng = random.Random(seed)
    ids = sorted(docs)
    rng.shuffle(ids)
    out: list[Pseudo] = []
    for doc_id in ids:
        if len(out) >= n:
            break
        options: list[tuple[str, str]] = []
        title = str(docs[doc_id][0].meta.get("title") or "").strip()
        if "title" in sources and _words_between(title, TITLE_WORDS):
            options.append(("title", title))
        if "sentence" in sources:
            chunk = rng.choice(docs[doc_id])
            sents = [s for s in split_sentences(chunk.text) if _words_between(s, SENTENCE_WORDS) and s != title]
            if len(sents) > 1:  # a one-sentence chunk has nothing left once the sentence is removed
                options.append(("sentence", rng.choice(sents)))
        if not options and "crop" in sources:
            words = rng.choice(docs[doc_id]).text.split()
            size = rng.randint(*CROP_WORDS)
            if len(words) >= 3 * size:  # enough text left once the window is cut out
                start = rng.randrange(len(words) - size)
                options.append(("crop", " ".join(words[start : start + size])))
        if options:
            source, span = rng.choice(options)
            out.append(Pseudo(f"pq{len(out)}", span, doc_id, source, span))
    return out


def mask(chunk: Doc, p: Pseudo) -> Doc:
    """The chunk without the pseudo-query's span: the title dropped (meta, and a copy near the start of the text,
    such as a Markdown heading), or the sentence (crop) cut out of the text."""
    if p.source == "title":
        meta = {k: v for k, v in chunk.meta.items() if k != "title"}
        at = chunk.text.find(p.span)
        text = chunk.text
        if 0 <= at < 200:
            text = f"{text[:at].rstrip(' #')} {text[at + len(p.span) :].lstrip(' .:')}".strip()
        return replace(chunk, text=text, meta=meta)
    flat = " ".join(chunk.text.split())
    return replace(chunk, text=" ".join(flat.replace(p.span, " ").split()))


class _Run:
    """One retriever of the shadow (``bm25`` or ``dense``)."""

    def __init__(self, shadow: Shadow, mode: str) -> None:
        self.shadow, self.mode = shadow, mode

    def retrieve(self, query: str, k: int = 10, filters: Any = None) -> list[Hit]:
        s = self.shadow
        if self.mode == "hybrid":  # as the collection's hybrid: RRF of each run's top 100
            return fuse([_Run(s, "bm25").retrieve(query, 100), _Run(s, "dense").retrieve(query, 100)], k)
        if self.mode == "bm25":
            ords, scores = s.bm25.search([query], k=k)
            pairs = [(int(o), float(v)) for o, v in zip(ords[0], scores[0], strict=True) if o >= 0]
        else:
            sims = s.vectors @ s.query_vector(query)
            top = np.argsort(-sims, kind="stable")[:k]
            pairs = [(int(o), float(sims[o])) for o in top]
        return [Hit(s.chunks[o], v, self.mode) for o, v in pairs]


class Shadow:
    """The collection's first stage over its chunks with every pseudo-query's span removed (module docstring)."""

    def __init__(
        self,
        kb: Any,
        chunks: Sequence[Doc],
        pseudo: Sequence[Pseudo],
        vectors: np.ndarray | None = None,
        max_chunks: int = 20_000,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        """``chunks`` are the collection's, with their stored embeddings ``vectors`` when it has them (else every
        chunk is encoded); the chunks of the pseudo-queries' documents are masked and encoded again."""
        sources = {p.doc: p for p in pseudo}
        rows = list(range(len(chunks)))
        if len(rows) > max_chunks:  # a sample: every source document, then others at random
            keep = [i for i in rows if _parent(chunks[i]) in sources]
            rest = [i for i in rows if _parent(chunks[i]) not in sources]
            rows = keep + random.Random(seed).sample(rest, max(0, max_chunks - len(keep)))
        self.chunks = [mask(c, sources[_parent(c)]) if _parent(c) in sources else c for c in (chunks[i] for i in rows)]
        self.docs = by_document(self.chunks)
        base = kb.bm25
        self.bm25 = BM25Index(params=base.params, tokenizer=base.tokenizer)
        self.bm25.add(np.arange(len(self.chunks)), [index_text(c.text, c.meta) for c in self.chunks])
        self.encoder = kb.encoder if kb.has_dense else None
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self._queries: dict[str, np.ndarray] = {}
        if self.encoder is not None:
            self.vectors = self._embed(vectors[rows] if vectors is not None else None, sources, progress)

    def _embed(self, stored: np.ndarray | None, sources: dict[str, Pseudo], progress: bool) -> np.ndarray:
        """The shadow's chunk vectors: stored ones kept, masked (or all, without stored ones) encoded."""
        todo = [i for i, c in enumerate(self.chunks) if stored is None or _parent(c) in sources]
        texts = [index_text(self.chunks[i].text, self.chunks[i].meta) for i in todo]
        fresh = _encode(self.encoder, texts, "encoding masked chunks", progress)
        if stored is None:
            return fresh
        out = np.array(stored, dtype=np.float32)
        if todo:
            out[todo] = fresh
        return out

    @property
    def has_dense(self) -> bool:
        return self.encoder is not None

    def ids(self) -> list[str]:
        return sorted(self.docs)

    def get(self, ids: Sequence[str]) -> list[Doc]:
        return [c for d in ids for c in self.docs.get(d, [])]

    def retriever(self, mode: str = "hybrid") -> _Run:
        if mode not in ("bm25", "dense", "hybrid") or (mode != "bm25" and self.encoder is None):
            raise ConfigError(f"the shadow first stage has no {mode!r} retriever")
        return _Run(self, mode)

    def encode_queries(self, queries: Sequence[str], progress: bool = True) -> None:
        """Embed queries in batches ahead of retrieval (one at a time is several times slower)."""
        if self.encoder is not None:
            todo = [q for q in dict.fromkeys(queries) if q not in self._queries]
            if todo:
                self._queries.update(zip(todo, _encode(self.encoder, todo, "encoding queries", progress), strict=True))

    def query_vector(self, query: str) -> np.ndarray:
        if query not in self._queries:
            self.encode_queries([query], progress=False)
        return self._queries[query]


def _encode(encoder: Any, texts: list[str], desc: str, progress: bool, batch: int = 256) -> np.ndarray:
    from tqdm import tqdm

    parts = [
        np.asarray(encoder.encode(texts[i : i + batch]), dtype=np.float32)
        for i in tqdm(range(0, len(texts), batch), desc=desc, unit="batch", disable=not progress)
    ]
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)
