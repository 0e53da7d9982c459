"""``train_reader``: fine-tune an extractive reader (:mod:`rag.models.reader`) on SQuAD-style QA folders.

Data: BEIR-layout QA folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``, ``answers.jsonl``), e.g.
``../shared/data/squad_v1.1_train``. Each question is paired with its judged paragraph; the answer's first
occurrence there is the target span (SQuAD v1.1 as shipped here has no ``answer_start``; for 99.3% of the
questions checked the first occurrence is the official one). Questions whose answer is not in the paragraph
(yes/no answers) are skipped.

Unanswerable pairs: a share of extra examples (``unanswerable``, default 0.2) pairs a question with another
paragraph of the same article (ids ``<article>_<n>``) that does not contain its answer, with [CLS] as the
target, as SQuAD 2.0 does. The reader then learns a null score, so spans from a passage that does not answer
rank below the null, which is what a reader over retrieved passages needs.

Held out: whole articles (at least ``heldout`` questions), never trained on. After training the reader answers
them twice: with the gold paragraph alone (EM/F1), and with the gold paragraph among four other paragraphs of the
article (F1, and whether the top span cites the gold paragraph). A logistic calibrator over (probability, score
margin) is fitted on one half of the second run and its reliability (ECE) measured on the other; the calibrator
saved is fitted on both halves, and only when it lowered the ECE there (else the span probability is the
confidence).

Training: the model's span loss (cross-entropy over start and end positions), AdamW with warm-up and linear
decay, batches of similar length (less padding), within ``TrainConfig.max_seconds`` when set: the schedule
shrinks to the steps that fit, as in :mod:`rag.train.loop`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.eval.calibration import expected_calibration_error
from rag.models.reader import FEATURES, Reader, calibrated
from rag.models.registry import data_hash, write_model_manifest, writing_model
from rag.models.verify_signals import Calibrator  # imported now: a run that ends in an hour must not fail on an import
from rag.train.loop import TrainConfig, make_optimizer


@dataclass(frozen=True)
class QAExample:
    """A question and a paragraph; ``start`` is the answer's character offset there, -1 when it does not answer."""

    qid: str
    question: str
    context: str
    answer: str
    start: int
    article: str


def article_of(doc_id: str) -> str:
    """The article a paragraph id belongs to (``Article_3`` → ``Article``); the id itself otherwise."""
    head, _, tail = doc_id.rpartition("_")
    return head if head and tail.isdigit() else doc_id


def load_examples(folder: str | Path, split: str | None = None) -> tuple[list[QAExample], dict[str, list[str]]]:
    """The answerable examples of a QA folder (one per question, its first judged paragraph holding the answer)
    and each article's paragraph texts."""
    from rag.datasets import load_answers, load_beir

    root = Path(folder)
    if split is None:
        split = next((s for s in ("train", "test", "dev") if (root / "qrels" / f"{s}.tsv").exists()), "train")
    data = load_beir(root, split)
    if not (root / "answers.jsonl").exists():
        raise ConfigError(f"{root} has no answers.jsonl; a reader trains on QA folders")
    answers = load_answers(root / "answers.jsonl")
    docs = {d.id: d.text for d in data.corpus}
    paragraphs: dict[str, list[str]] = {}
    for d in data.corpus:
        paragraphs.setdefault(article_of(d.id), []).append(d.text)
    out = []
    for qid, question in data.queries.items():
        for doc_id in sorted(data.qrels[qid], key=lambda d: -data.qrels[qid][d]):
            text = docs.get(doc_id, "")
            hit = next(((a, text.find(a)) for a in answers.get(qid, []) if a and text.find(a) >= 0), None)
            if hit is not None:
                out.append(QAExample(qid, question, text, hit[0], hit[1], article_of(doc_id)))
                break
    return out, paragraphs


def split_articles(examples: Sequence[QAExample], heldout: int, seed: int) -> tuple[list[QAExample], list[QAExample]]:
    """(train, held-out): whole articles held out, in a seeded order, until ``heldout`` questions are."""
    articles = sorted({e.article for e in examples})
    random.Random(seed).shuffle(articles)
    by_article: dict[str, list[QAExample]] = {}
    for e in examples:
        by_article.setdefault(e.article, []).append(e)
    held: list[QAExample] = []
    for a in articles:
        if len(held) >= heldout:
            break
        held += by_article[a]
    held_ids = {e.qid for e in held}
    return [e for e in examples if e.qid not in held_ids], held


def with_unanswerable(
    examples: Sequence[QAExample], paragraphs: dict[str, list[str]], share: float, seed: int
) -> list[QAExample]:
    """``examples`` plus ``share`` × as many questions paired with another paragraph of their article that does not
    hold the answer (start -1)."""
    rng = random.Random(seed)
    extra = []
    for e in rng.sample(list(examples), min(len(examples), round(share * len(examples)))):
        others = [p for p in paragraphs.get(e.article, []) if p != e.context and e.answer not in p]
        if others:
            extra.append(QAExample(e.qid, e.question, rng.choice(others), e.answer, -1, e.article))
    return list(examples) + extra


def features(tok: Any, examples: Sequence[QAExample], max_length: int, stride: int) -> list[dict[str, Any]]:
    """Token windows with their target positions (0, 0: [CLS], when the window does not hold the answer)."""
    enc = tok(
        [e.question for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    out = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        e = examples[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        s_tok = e_tok = 0
        if e.start >= 0:
            a, b = e.start, e.start + len(e.answer)
            inside = [j for j, o in enumerate(offsets) if seq[j] == 1]
            if inside and offsets[inside[0]][0] <= a and offsets[inside[-1]][1] >= b:
                s_tok = next(j for j in inside if offsets[j][1] > a)
                e_tok = next(j for j in reversed(inside) if offsets[j][0] < b)
        out.append({**{k: enc[k][i] for k in keys}, "start_positions": s_tok, "end_positions": e_tok})
    return out


def _batches(feats: Sequence[dict[str, Any]], size: int, seed: int) -> Any:
    """Endless batches of ``size`` windows; each epoch shuffled, then sorted by length within runs of 50 batches
    (less padding, still mixed)."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(feats)))
        rng.shuffle(order)
        chunks = []
        for lo in range(0, len(order), size * 50):
            run = sorted(order[lo : lo + size * 50], key=lambda i: len(feats[i]["input_ids"]))
            chunks += [run[j : j + size] for j in range(0, len(run), size)]
        rng.shuffle(chunks)
        yield from chunks


def fit_reader(model: Any, tok: Any, feats: Sequence[dict[str, Any]], config: TrainConfig) -> dict[str, Any]:
    """Train ``model`` in place on ``feats``; returns steps, examples, seconds and the final loss."""
    import torch
    from tqdm import tqdm

    if not feats:
        raise ConfigError("no training examples for the reader")
    torch.manual_seed(config.seed)
    model.train()
    total = max(1, round(-(-len(feats) // config.batch_pairs) * config.epochs))
    total = min(total, config.max_steps) if config.max_steps else total
    plan = [total]
    opt, sched = make_optimizer(model, config, plan)
    t0, losses, steps = time.perf_counter(), [], 0
    bar = tqdm(total=total, desc="training (reader)", unit="step", disable=not config.progress)
    for step, idx in zip(range(total), _batches(feats, config.batch_pairs, config.seed), strict=False):
        if step >= plan[0] or (config.max_seconds and time.perf_counter() - t0 > config.max_seconds):
            break
        batch = tok.pad([feats[i] for i in idx], return_tensors="pt").to(model.device)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        steps = step + 1
        bar.update(1)
        if config.max_seconds and (step in (4, 30) or step % 200 == 199):  # the pace so far: the schedule fits
            plan[0] = min(total, max(step + 1, int(config.max_seconds / ((time.perf_counter() - t0) / (step + 1)))))
            bar.total = plan[0]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    bar.close()
    model.eval()
    tail = losses[-50:]
    return {
        "steps": steps,
        "windows": steps * config.batch_pairs,
        "seconds": round(time.perf_counter() - t0, 1),
        "final_loss": round(sum(tail) / len(tail), 4),
    }


def evaluate_reader(
    reader: Reader, held: Sequence[QAExample], paragraphs: dict[str, list[str]], seed: int = 0
) -> tuple[dict[str, Any], list[float] | None]:
    """Scores on held-out questions (see the module docstring) and the calibrator weights (None with too few)."""
    from rag.eval.qa import exact_match, token_f1

    rng = random.Random(seed)
    em = f1 = f1_mixed = cited = 0.0
    rows: list[tuple[dict[str, float], float]] = []
    for e in held:
        gold = reader.read(e.question, [e.context])
        pred = gold[0].text if gold else ""
        em += exact_match(pred, [e.answer])
        f1 += token_f1(pred, [e.answer])
        others = [p for p in paragraphs.get(e.article, []) if p != e.context]
        passages = [e.context, *rng.sample(others, min(4, len(others)))]
        rng.shuffle(passages)
        best = reader.read(e.question, passages)
        if not best:
            continue
        s = best[0]
        score = token_f1(s.text, [e.answer])
        f1_mixed += score
        cited += float(passages[s.hit] == e.context)
        margin = max(-10.0, min(10.0, s.score - s.null_score))
        rows.append(({"probability": s.probability, "margin": margin, "bias": 1.0}, float(score >= 0.5)))
    n = max(1, len(held))
    metrics: dict[str, Any] = {
        "questions": len(held),
        "gold_paragraph": {"em": round(em / n, 4), "f1": round(f1 / n, 4)},
        "among_5_paragraphs": {"f1": round(f1_mixed / n, 4), "cites_gold": round(cited / n, 4)},
    }
    labels = {y for _, y in rows}
    if len(rows) < 40 or len(labels) < 2:
        return metrics, None
    half = len(rows) // 2
    a, b = rows[:half], rows[half:]
    cal = Calibrator.fit([r for r, _ in a], [y for _, y in a], FEATURES)
    probs = [calibrated(cal.weights, r["probability"], r["margin"]) for r, _ in b]
    metrics["calibration"] = {
        "ece": round(expected_calibration_error(probs, [y for _, y in b]), 4),
        "ece_uncalibrated": round(expected_calibration_error([r["probability"] for r, _ in b], [y for _, y in b]), 4),
        "questions": len(b),
    }
    if metrics["calibration"]["ece"] >= metrics["calibration"]["ece_uncalibrated"]:
        metrics["calibration"]["kept"] = False  # it did not help on the half it was not fitted on
        return metrics, None
    metrics["calibration"]["kept"] = True
    return metrics, Calibrator.fit([r for r, _ in rows], [y for _, y in rows], FEATURES).weights


def train_reader(
    data: Sequence[str | Path],
    *,
    dest: str | Path,
    name: str,
    base: str = "default",
    force: bool = False,
    config: TrainConfig | None = None,
    stride: int = 64,
    unanswerable: float = 0.2,
    heldout: int = 600,
    max_questions: int = 0,
) -> dict[str, Any]:
    """Train a reader on the QA folders ``data`` and save it (model + manifest) at ``dest``; returns the manifest."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from rag.models.encoders import quiet_transformers, resolve_model_path, set_threads

    config = config or TrainConfig(epochs=1.0, batch_pairs=16, lr=1e-4, head_lr_scale=10.0, max_length=256)
    set_threads(config.threads)
    quiet_transformers(errors_only=True)
    examples: list[QAExample] = []
    paragraphs: dict[str, list[str]] = {}
    for folder in data:
        ex, par = load_examples(folder)
        examples += ex
        paragraphs.update(par)
    train, held = split_articles(examples, heldout, config.seed)
    if max_questions:
        train = random.Random(config.seed).sample(train, min(max_questions, len(train)))
    train = with_unanswerable(train, paragraphs, unanswerable, config.seed)
    path = resolve_model_path(base)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForQuestionAnswering.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load base model {base!r} for the reader ({e}); pass a local model directory") from e
    import torch

    model.to("cuda" if torch.cuda.is_available() else "cpu")
    feats = features(tok, train, config.max_length, stride)
    stats = fit_reader(model, tok, feats, config)
    with writing_model(dest, force=force) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        t0 = time.perf_counter()
        reader = Reader(tmp, max_length=config.max_length, stride=stride)
        metrics, weights = evaluate_reader(reader, held, paragraphs, config.seed)
        metrics["heldout_seconds"] = round(time.perf_counter() - t0, 1)
        training = {
            "data": [str(d) for d in data],
            "data_sha256": data_hash((e.qid, e.start, e.context[:50]) for e in train),
            "questions": sum(e.start >= 0 for e in train),
            "unanswerable_pairs": sum(e.start < 0 for e in train),
            "heldout_questions": len(held),
            **stats,
            "batch": config.batch_pairs,
            "lr": config.lr,
            "device": str(model.device),
        }
        settings = {"max_length": config.max_length, "stride": stride, "calibration": weights}
        manifest = write_model_manifest(
            tmp, "reader", name, base, training=training, metrics=metrics, settings=settings
        )
    return manifest
