"""Training data for verifiers, ``train_verifier`` and ``evaluate_verifier``: planted-error claims from QA data.

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
A sixth of the questions is held out to fit the calibrator (logistic regression over the model's class
probabilities and the lexical/numeric signal) and to report F1 and expected calibration error.
"""

from __future__ import annotations

import itertools
import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, SourceError
from rag.models.verify import (
    _NUM,
    FEATURES,
    LEXICAL_FEATURES,
    Calibrator,
    NLIVerifier,
    claim_features,
    hypothesis_for,
    select_premise,
)
from rag.text.sentences import split_sentences
from rag.text.terms import terms
from rag.train.loop import Group, TrainConfig

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
        first = _NUM.search(answer)
        cands = sorted({n for n in _NUM.findall(passage) if first and n != first.group() and n.lower() not in taken})
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
    ``hard``, a fourth where the passage has one (the answer swapped for another of the passage's own)."""
    from rag.datasets import load_answers, load_beir
    from rag.indexers.collection import Collection

    root = Path(data_dir)
    if not (root / "answers.jsonl").is_file():
        raise SourceError(str(root), "not a QA folder: needs answers.jsonl next to corpus, queries and qrels")
    data = load_beir(root, "test")
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
        bm25 = kb.retriever("bm25")
        for qid in qids:
            if used >= max_questions:
                break
            q = data.queries[qid]
            gold = [d for d in data.qrels.get(qid, {}) if d in texts]
            found = next(
                (
                    (a, g)
                    for a in answers[qid]
                    if a.lower() not in ("yes", "no") and 0 < len(a.split()) <= 8
                    for g in gold
                    if a.lower() in texts[g].lower()
                ),
                None,
            )
            if found is None:
                continue
            a, g = found
            p = texts[g]
            sent = next((s for s in split_sentences(p) if a in s), None)
            kind = _kind(a)
            if kind == "number" and rng.random() < 0.5:
                swap = _swap_number(a, rng)
            else:
                cands = [x for x in pool.get(kind, []) if x.lower() != a.lower() and x.lower() not in p.lower()]
                swap = rng.choice(cands) if cands else ""
            if not swap or swap.lower() in p.lower():
                continue
            distract = [
                texts[str(h.doc.meta.get("parent", h.doc.id))]
                for h in bm25.retrieve(q, k=12)
                if str(h.doc.meta.get("parent", h.doc.id)) not in gold
            ]
            if len(distract) < 3:  # small corpora: BM25 finds few neighbours; fill with random paragraphs
                distract += [texts[d] for d in rng.sample(sorted(texts), min(len(texts), 12)) if d not in gold]
            distract = [t for t in dict.fromkeys(distract) if a.lower() not in t.lower()][:3]
            if len(distract) < 3:
                continue
            claim = sent if (sent and rng.random() < 0.5) else a
            wrong = claim.replace(a, swap)
            with_gold = (p, *distract[:2])
            used += 1
            out += [
                ClaimExample(q, claim, with_gold, 0, 0),
                ClaimExample(q, wrong, with_gold, 2, 0, PLANTED[0]),
                ClaimExample(q, claim, tuple(distract), 1, -1, PLANTED[1]),
            ]
            inner = _swap_within(a, kind, q, p, rng) if hard else ""
            if inner and claim.replace(a, inner) != claim:
                out.append(ClaimExample(q, claim.replace(a, inner), with_gold, 2, 0, PLANTED[2]))
        kb.close()
    if not out:
        raise SourceError(str(root), "no question's answer occurs in its gold paragraph; cannot build claims")
    return out


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


def evaluate_verifier(verifier: NLIVerifier, examples: Sequence[ClaimExample], bins: int = 10) -> dict[str, float]:
    """Unsupported-claim detection (positive class: not supported) precision / recall / F1, accuracy of the
    three-way verdict, the expected calibration error of P(supported), and the recall of each planted error."""
    probs, truth, three = [], [], []
    caught: dict[str, list[bool]] = {}
    all_scored = verifier.score_many([(hypothesis_for(ex.question, ex.claim), ex.passages) for ex in examples])
    for ex, scored in zip(examples, all_scored, strict=True):
        best = max(range(len(scored)), key=lambda i: scored[i][0])
        p, cls = scored[best]
        probs.append(p)
        truth.append(ex.label == 0)
        verdict = 0 if p >= verifier.threshold else (2 if cls[2] > cls[1] else 1)
        three.append(verdict == ex.label)
        if ex.planted:
            caught.setdefault(ex.planted, []).append(p < verifier.threshold)
    pr, tr = np.array(probs), np.array(truth)
    pred_bad, bad = pr < verifier.threshold, ~tr
    tp = float(np.sum(pred_bad & bad))
    precision = tp / max(1.0, float(pred_bad.sum()))
    recall = tp / max(1.0, float(bad.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (pr >= lo) & ((pr < hi) if hi < 1 else (pr <= hi))
        if m.any():
            ece += m.mean() * abs(pr[m].mean() - tr[m].mean())
    return {
        "claims": len(examples),
        "unsupported_precision": round(precision, 4),
        "unsupported_recall": round(recall, 4),
        "unsupported_f1": round(f1, 4),
        "verdict_accuracy": round(float(np.mean(three)), 4),
        "ece": round(float(ece), 4),
        **{f"recall {kind}": round(float(np.mean(c)), 4) for kind, c in sorted(caught.items())},
    }


def fit_calibrator(verifier: NLIVerifier, examples: Sequence[ClaimExample]) -> Calibrator:
    """Fit the logistic calibrator on held-out claims: the model's class probabilities (when the verifier has a
    model) and the lexical/numeric signal of each claim against its deciding passage."""
    pairs = [claim_pair(ex) for ex in examples]
    has_model = verifier._model is not None
    probs = verifier.class_probs(pairs) if has_model else [None] * len(pairs)
    rows = [claim_features(hyp, prem, pr) for (prem, hyp), pr in zip(pairs, probs, strict=True)]
    y = [1.0 if ex.label == 0 else 0.0 for ex in examples]
    return Calibrator.fit(rows, y, FEATURES if has_model else LEXICAL_FEATURES)


def train_verifier(
    data_dirs: Sequence[str | Path],
    *,
    dest: str | Path,
    name: str,
    base: str = "default",
    force: bool = False,
    max_questions: int = 1000,
    config: TrainConfig | None = None,
    hard: bool = True,
) -> dict[str, Any]:
    """Train a verifier on planted-error claims from ``data_dirs`` (with ``hard``, also answers swapped within
    the passage) and save it at ``dest``; returns its manifest."""
    from rag.models.registry import data_hash, write_model_manifest, writing_model
    from rag.train.loop import fit, new_cross_encoder

    config = config or TrainConfig(max_length=192)
    if not data_dirs:
        raise ConfigError("give at least one QA folder to train the verifier on (e.g. ../shared/data/squad_v1.1_dev)")
    examples: list[ClaimExample] = []
    for d in data_dirs:
        examples += build_claims(d, max_questions=max_questions // len(data_dirs), seed=config.seed, hard=hard)
    questions = by_question(examples)
    n_cal = max(1, len(questions) // 6)  # whole questions
    cal_set = [ex for qs in questions[:n_cal] for ex in qs]
    train_set = [ex for qs in questions[n_cal:] for ex in qs]
    with writing_model(dest, force=force) as tmp:
        model = new_cross_encoder(base, num_labels=3, max_length=config.max_length)
        net = model[0].auto_model
        net.config.id2label = dict(enumerate(("supported", "unsupported", "contradicted")))
        net.config.label2id = {v: k for k, v in net.config.id2label.items()}
        stats = fit(model, to_groups(train_set), "contrast", config)
        model.save(str(tmp))
        # the held-out claims are scored by the model as saved (read back), as users will load it
        model = type(model)(str(tmp), max_length=config.max_length)
        verifier = NLIVerifier.from_model(model, name)
        raw = evaluate_verifier(verifier, cal_set)
        verifier.calibrator = fit_calibrator(verifier, cal_set)
        calibrated = evaluate_verifier(verifier, cal_set)
        return write_model_manifest(
            tmp,
            "verifier",
            name,
            base,
            settings={"calibrator": verifier.calibrator.weights, "features": list(verifier.calibrator.features)},
            training={
                "sources": [str(d) for d in data_dirs],
                "data_sha256": data_hash([vars(e) for e in examples]),
                "claims": len(train_set),
                "objective": "contrast",
                "steps": stats.steps,
                "seconds": stats.seconds,
                "final_loss": stats.final_loss,
                "max_length": config.max_length,
            },
            metrics={"heldout_uncalibrated": raw, "heldout": calibrated},
        )
