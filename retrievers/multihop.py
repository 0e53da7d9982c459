"""Iterative multi-hop retrieval (IRCoT-lite, no LLM): retrieve, read the bridge entity, retrieve again.

A bridge question names one thing and asks about another that only the first one's passage names ("Where was
the festival Billy McFarland was charged over held?": McFarland's passage names the Fyre Festival, whose
passage holds the answer). :class:`MultiHopRetriever` runs the first hop for the question (and for each
sub-query when a decomposer splits it), reads bridge entities from the top passages -- with an extractive reader,
its answer to the question from that passage (the bridge a reader finds: "Fyre Festival"), and the passage's
title when the question does not already name it, then the salient capitalised or quoted phrases of its text that
the question does not contain -- and retrieves again for *question + entities* and, for the reader's answer, for
*answer + what the passage leaves unasked* (:func:`residual`). The hops' runs are merged with
reciprocal rank fusion (:func:`rag.retrievers.hybrid.fuse`); a later hop's runs weigh less the lower the passage
they were read from ranked, so the first hop's best passage keeps its place and the bridge's passage joins it.

Example:
    >>> mh = MultiHopRetriever(kb.retriever("bm25"), decomposer=RuleDecomposer())       # doctest: +SKIP
    >>> [h.doc.meta["title"] for h in mh.retrieve("Where was the festival ... held?", k=5)]  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rag.checks import check_k, check_query
from rag.errors import ConfigError
from rag.protocols import Retriever
from rag.retrievers.hybrid import fuse
from rag.types import Hit

_SPAN = re.compile(
    r"\"[^\"]{2,80}\"|“[^”]{2,80}”"
    r"|(?:[A-Z][\w'’.\-]*|\d{3,4})(?:\s+(?:(?:of|the|de|du|la|le|von|van|der|del|and|&|for|on|in)\s+)*"
    r"(?:[A-Z][\w'’.\-]*|\d{1,4}))*"
)
_PLAIN = {
    "the", "a", "an", "he", "she", "it", "they", "his", "her", "its", "their", "in", "on", "at", "this", "that",
    "these", "those", "after", "before", "during", "when", "while", "as", "with", "from", "for", "by", "born",
    "there", "some", "many", "one", "two", "also", "but", "and", "or", "of", "to", "is", "was", "are", "were",
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "american", "english", "british", "french", "german", "however", "since", "following",
}  # fmt: skip
_WORD = re.compile(r"\w+")
_LEAD = re.compile(r"^(?:(?:the|a|an|in|on|at|by|for|from|after|before|during|since|his|her|its|their|this)\s+)+", re.I)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _PLAIN]


def _covered(span: str, known: set[str]) -> bool:
    """True when most of the span's content words are already known (in the question or the title)."""
    words = _words(span)
    return not words or sum(w in known for w in words) * 2 >= len(words)


def bridge_entities(question: str, hit: Hit, max_entities: int = 8) -> list[str]:
    """Entities a passage names that the question does not: its title first, then salient phrases of its text."""
    known = set(_words(question))
    out: list[str] = []
    title = str(hit.doc.meta.get("title") or "")
    if title and not _covered(title, known):
        out.append(title)
    known |= set(_words(title))
    for m in _SPAN.finditer(hit.doc.text):
        if len(out) >= max_entities:
            break
        span = _LEAD.sub("", m.group(0).strip('"“” '))
        if span.isdigit() or (len(span) < 4 and not span.isupper()):  # "1998", "Mr": not names worth a hop
            continue
        if not _covered(span, known):
            out.append(span)
            known |= set(_words(span))
    return out


def residual(question: str, hit: Hit) -> str:
    """The words of ``question`` its first hop's passage does not hold: what is left to ask once the bridge is
    known ("Where was the festival Billy Mercer promoted held?" read in Mercer's passage: "Where held?")."""
    seen = set(_WORD.findall(f"{hit.doc.meta.get('title') or ''} {hit.doc.text}".lower()))
    return " ".join(w for w in question.split() if not (set(_WORD.findall(w.lower())) <= seen))


class MultiHopRetriever:
    """A :class:`~rag.protocols.Retriever` that retrieves in hops, following bridge entities (IRCoT-lite).

    Args:
        retriever: the retriever run at every hop (e.g. ``kb.retriever("bm25")`` or a hybrid).
        decomposer: optional; when it splits the question, the first hop also retrieves for each ``text``
            sub-query (comparisons: one run per entity). A decomposer with ``needs_hops(query)`` (the learned
            one) can veto later hops for questions it confidently calls single-hop.
        hops: number of hops (1 = no bridging).
        per_hop: hits asked of the retriever per query (default ``max(20, 2 * k)``).
        bridges: how many of the previous hop's top passages to read bridge entities from.
        max_entities: entities read per passage.
        hop_weight: RRF weight of a later hop's run read from the previous hop's best passage; the run read
            from the passage at rank r gets ``hop_weight / r`` (the first hop's runs weigh 1).
        rrf_k: RRF's rank constant. Small (default 1) so a passage one run ranks first beats passages that
            every run ranks in the middle -- the runs look for different passages.
        k: default number of hits returned.
        reader: an extractive reader (:class:`~rag.models.reader.Reader`); its answer to the question from a
            passage, when it finds one the question does not already name, fills a query of its own: the answer
            and the question's words the passage does not hold. ``last_trace["read"]`` lists, per hop, each
            passage read and the span found.

    The defaults were chosen on HotpotQA dev questions with BM25 (``benchmarks/small_models.py decomposer``).

    Example:
        >>> mh = MultiHopRetriever(kb.retriever("bm25"), hops=2)                      # doctest: +SKIP
        >>> mh.retrieve("Who founded the label that signed Nirvana?", k=5)            # doctest: +SKIP
    """

    name = "multihop"

    def __init__(
        self,
        retriever: Retriever,
        decomposer: Any = None,
        hops: int = 2,
        per_hop: int | None = None,
        bridges: int = 2,
        max_entities: int = 8,
        hop_weight: float = 1.5,
        rrf_k: float = 1.0,
        k: int = 10,
        reader: Any = None,
    ) -> None:
        if not callable(getattr(retriever, "retrieve", None)):
            raise ConfigError(f"retriever needs a retrieve(query, k, filters) method; got {type(retriever).__name__}")
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
            raise ConfigError(f"hops must be an integer >= 1, got {hops!r}")
        if bridges < 1 or max_entities < 1 or hop_weight <= 0:
            raise ConfigError(
                f"bridges and max_entities must be >= 1 and hop_weight > 0; got {bridges}, {max_entities}, {hop_weight}"
            )
        self.retriever, self.decomposer, self.hops = retriever, decomposer, hops
        self.per_hop = None if per_hop is None else check_k(per_hop)
        self.bridges, self.max_entities, self.hop_weight = bridges, max_entities, hop_weight
        self.rrf_k = rrf_k
        fuse([[]], 1, rrf_k=rrf_k)  # validate now
        self.k = check_k(k)
        self.reader = reader
        self.last_trace: dict[str, Any] = {}

    def _first_queries(self, query: str) -> list[str]:
        subs = self.decomposer.decompose(query) if self.decomposer is not None else []
        if len(subs) < 2:
            return [query]
        return [query, *(s.text for s in subs if s.kind == "text" and s.text.strip() and s.text != query)]

    def retrieve(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """At most ``k`` hits, deduplicated by document id, best first, merged over all hops."""
        check_query(query)
        k = check_k(self.k if k is None else k)
        per = self.per_hop or max(20, 2 * k)
        first = self._first_queries(query)
        runs: list[Sequence[Hit]] = [self.retriever.retrieve(q, per, filters) for q in first]
        weights = [1.0] * len(runs)
        trace: dict[str, Any] = {"queries": [first], "bridges": [], "read": []}
        hops = self.hops
        veto = getattr(self.decomposer, "needs_hops", None)
        if hops > 1 and callable(veto) and len(first) == 1 and not veto(query):
            hops = 1
        current = fuse(runs, per, weights=weights, rrf_k=self.rrf_k) if len(runs) > 1 else list(runs[0])
        asked = set(first)
        for _ in range(1, hops):
            new_runs: list[Sequence[Hit]] = []
            new_weights: list[float] = []
            queries: list[str] = []
            read = self._read(query, current[: self.bridges])
            trace["read"].append([{"passage": h.doc.id, "span": span} for h, span in zip(current, read, strict=False)])
            for rank, hit in enumerate(current[: self.bridges], 1):
                ents = bridge_entities(query, hit, self.max_entities)
                span = read[rank - 1]
                hop = [f"{query} {' '.join(ents)}".strip()] if ents else []
                if span and not _covered(span, set(_words(query))):  # the bridge filled into what is left to ask
                    hop.append(f"{span} {residual(query, hit)}".strip())
                    trace["bridges"].append([span])
                if ents:
                    trace["bridges"].append(ents)
                for q2 in (q for q in hop if q not in asked):
                    asked.add(q2)
                    queries.append(q2)
                    new_runs.append(self.retriever.retrieve(q2, per, filters))
                    new_weights.append(self.hop_weight / rank)
            if not new_runs:
                break
            trace["queries"].append(queries)
            runs += new_runs
            weights += new_weights
            current = fuse(runs, per, weights=weights, rrf_k=self.rrf_k, source=self.name)
        self.last_trace = trace
        return fuse(runs, k, weights=weights, rrf_k=self.rrf_k, source=self.name)

    def _read(self, query: str, hits: Sequence[Hit]) -> list[str | None]:
        """The reader's answer to ``query`` from each passage on its own (None where it finds none, or without a
        reader)."""
        if self.reader is None or not hits:
            return [None] * len(hits)
        return [
            s.text if s is not None and s.score >= s.null_score else None for s in self.reader.read_each(query, hits)
        ]
