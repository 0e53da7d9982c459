"""Training data for verifiers: planted-error claims from QA data.

From a QA folder in the BEIR layout with ``answers.jsonl`` (SQuAD, HotpotQA, NQ in ../shared/data), per question
whose gold answer occurs in a gold paragraph P (yes/no answers are skipped):

- supported: the answer, as the sentence of P that contains it or as "question + answer", against P;
- contradicted ("swapped"): the same claim with the answer swapped for another answer of the same type (number
  for number, name for name) that P does not contain, against P;
- unsupported ("wrong passage"): the true claim against the BM25-nearest paragraphs that do not contain the answer;
- with ``hard=True``, also contradicted ("swapped within passage"): the answer swapped for another number or name
  that P does contain, the mistake a reader makes when it takes the wrong entity from the right passage. Every
  word of such a claim is in P, so only a model that reads the relation can catch it; training uses these.

Half the claims take the sentence form, half the short form, so the verifier sees both shapes an LLM answer has.
"""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.datasets import load_answers, load_beir
from rag.errors import SourceError
from rag.indexers.collection import Collection
from rag.models.verify import (
    NUMBER,
    hypothesis_for,
    select_premise,
)
from rag.text.sentences import split_sentences
from rag.text.terms import terms
from rag.train.loop import Group

PLANTED = ("swapped", "wrong passage", "swapped within passage")
_NAME_SPAN = re.compile(r"[A-Z][\w'\-]+(?:\s+[A-Z][\w'\-]+)*")


@dataclass(frozen=True)
class ClaimExample:
    """A claim to verify, the passages it is checked against, and its label (0 supported, 1 unsupported,
    2 contradicted); ``gold`` is the index of the passage that decides it (-1 for unsupported); ``planted`` names
    the error (one of :data:`PLANTED`; empty for a supported claim)."""

    question: str
    claim: str
    passages: tuple[str, ...]
    label: int
    gold: int = -1
    planted: str = ""


def _kind(answer: str) -> str:
    if re.search(r"\d", answer):
        return "number"
    return "name" if answer[:1].isupper() else "other"


def _swap_number(answer: str, rng: random.Random) -> str:
    def repl(m: re.Match[str]) -> str:
        v = int(m.group().replace(",", ""))
        delta = rng.choice([1, 2, 3, 5, 10, 12, 25]) * rng.choice([-1, 1])
        return str(max(0, v + delta) if v != abs(delta) else v + 7)

    return re.sub(r"\d[\d,]*", repl, answer, count=1)


def _swap_within(answer: str, kind: str, question: str, passage: str, rng: random.Random) -> str:
    """``answer`` with its number, or the whole name, replaced by another one that ``passage`` contains and that
    shares no word with the answer or the question ("" when the passage has none)."""
    taken = {w.lower() for w in re.findall(r"\w+", f"{answer} {question}")}
    if kind == "number":
        first = NUMBER.search(answer)
        cands = sorted({n for n in NUMBER.findall(passage) if first and n != first.group() and n.lower() not in taken})
        return answer.replace(first.group(), rng.choice(cands), 1) if first and cands else ""
    if kind != "name":
        return ""
    cands = sorted(
        {
            span
            for span in _NAME_SPAN.findall(passage)
            if terms(span)
            and not {w.lower() for w in re.findall(r"\w+", span)} & taken
            and re.search(rf"[a-z,;:] {re.escape(span)}\b", passage)  # a name mid-sentence, not a capitalised opener
        }
    )
    same = [c for c in cands if len(c.split()) == len(answer.split())]  # "Carolina Panthers" for "Denver Broncos"
    return rng.choice(same or cands) if cands else ""


def build_claims(
    data_dir: str | Path, max_questions: int = 1000, seed: int = 0, hard: bool = False
) -> list[ClaimExample]:
    """Three claims (supported, contradicted, unsupported) per usable question of a QA folder, consecutive; with
    ``hard``, a fourth where the passage has one (the answer swapped for another of the passage's own). The
    folder's ``test`` judgements, or its ``train`` ones when it has no others (a training set)."""
    root = Path(data_dir)
    if not (root / "answers.jsonl").is_file():
        raise SourceError(str(root), "not a QA folder: needs answers.jsonl next to corpus, queries and qrels")
    split = "test" if (root / "qrels" / "test.tsv").exists() or not (root / "qrels" / "train.tsv").exists() else "train"
    data = load_beir(root, split)
    answers = load_answers(root / "answers.jsonl")
    texts = {d.id: (f"{d.meta['title']}. {d.text}" if d.meta.get("title") else d.text) for d in data.corpus}
    rng = random.Random(seed)
    pool: dict[str, list[str]] = {}
    for q in data.queries:
        for a in answers.get(q, [])[:1]:
            pool.setdefault(_kind(a), []).append(a)
    qids = sorted(q for q in data.queries if q in answers)
    rng.shuffle(qids)
    out: list[ClaimExample] = []
    used = 0  # questions that gave claims
    with tempfile.TemporaryDirectory(prefix="rag-verifier-") as tmp:
        kb = Collection.create(Path(tmp) / "kb", encoder=None, chunk_size=0)
        kb.add(data.corpus)
        source = _Source(data.queries, data.qrels, answers, texts, pool, kb.retriever("bm25"))
        for qid in qids:
            if used >= max_questions:
                break
            claims = _claims_of(source, qid, rng, hard)
            used += bool(claims)
            out += claims
        kb.close()
    if not out:
        raise SourceError(str(root), "no question's answer occurs in its gold paragraph; cannot build claims")
    return out


@dataclass(frozen=True)
class _Source:
    """A QA folder, read for building claims: questions, gold passages, answers, passage texts, the answers of each
    kind (to swap in) and a BM25 retriever over the passages (to find distractors)."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]]
    texts: dict[str, str]
    pool: dict[str, list[str]]
    bm25: Any


def _claims_of(src: _Source, qid: str, rng: random.Random, hard: bool) -> list[ClaimExample]:
    """The claims of one question (none when its answer is not in a gold passage or no swap or distractors exist).
    Draws from ``rng`` in a fixed order, so a seed gives the same claims."""
    q = src.queries[qid]
    gold = [d for d in src.qrels.get(qid, {}) if d in src.texts]
    found = next(
        (
            (a, g)
            for a in src.answers[qid]
            if a.lower() not in ("yes", "no") and 0 < len(a.split()) <= 8
            for g in gold
            if a.lower() in src.texts[g].lower()
        ),
        None,
    )
    if found is None:
        return []
    a, g = found
    p = src.texts[g]
    sent = next((s for s in split_sentences(p) if a in s), None)
    kind = _kind(a)
    if kind == "number" and rng.random() < 0.5:
        swap = _swap_number(a, rng)
    else:
        cands = [x for x in src.pool.get(kind, []) if x.lower() != a.lower() and x.lower() not in p.lower()]
        swap = rng.choice(cands) if cands else ""
    if not swap or swap.lower() in p.lower():
        return []
    distract = _distractors(src, q, a, gold, rng)
    if len(distract) < 3:
        return []
    claim = sent if (sent and rng.random() < 0.5) else a
    with_gold = (p, *distract[:2])
    out = [
        ClaimExample(q, claim, with_gold, 0, 0),
        ClaimExample(q, claim.replace(a, swap), with_gold, 2, 0, PLANTED[0]),
        ClaimExample(q, claim, tuple(distract), 1, -1, PLANTED[1]),
    ]
    inner = _swap_within(a, kind, q, p, rng) if hard else ""
    if inner and claim.replace(a, inner) != claim:
        out.append(ClaimExample(q, claim.replace(a, inner), with_gold, 2, 0, PLANTED[2]))
    return out


def _distractors(src: _Source, q: str, a: str, gold: list[str], rng: random.Random) -> list[str]:
    """Up to three passages near the question (BM25) that are not gold and do not hold the answer."""
    distract = [
        src.texts[str(h.doc.meta.get("parent", h.doc.id))]
        for h in src.bm25.retrieve(q, k=12)
        if str(h.doc.meta.get("parent", h.doc.id)) not in gold
    ]
    if len(distract) < 3:  # small corpora: BM25 finds few neighbours; fill with random paragraphs
        distract += [src.texts[d] for d in rng.sample(sorted(src.texts), min(len(src.texts), 12)) if d not in gold]
    return [t for t in dict.fromkeys(distract) if a.lower() not in t.lower()][:3]


def claim_pair(ex: ClaimExample) -> tuple[str, str]:
    """(premise, hypothesis) of a claim: the deciding passage's best sentences, or the nearest distractor's."""
    hyp = hypothesis_for(ex.question, ex.claim)
    return select_premise(hyp, ex.passages[ex.gold if ex.gold >= 0 else 0]), hyp


def by_question(examples: Sequence[ClaimExample]) -> list[list[ClaimExample]]:
    """Consecutive claims of one question (as :func:`build_claims` emits them), each list starting at a supported
    claim."""
    out: list[list[ClaimExample]] = []
    for ex in examples:
        if out and ex.label != 0 and out[-1][0].question == ex.question:
            out[-1].append(ex)
        else:
            out.append([ex])
    return out


def to_groups(examples: Sequence[ClaimExample]) -> list[Group]:
    """One ``contrast`` training group per question: its claims' (premise, hypothesis) pairs and classes."""
    return [
        Group(pairs=tuple(claim_pair(ex) for ex in qs), labels=tuple(ex.label for ex in qs))
        for qs in by_question(examples)
    ]
