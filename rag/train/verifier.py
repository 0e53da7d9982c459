"""``train_verifier`` and ``evaluate_verifier``: a claim verifier trained on planted-error claims
(:mod:`rag.train.claims`).

A sixth of the questions is held out to fit the calibrator (logistic regression over the model's class
probabilities and the lexical/numeric signal) and to report F1 and expected calibration error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.eval.calibration import expected_calibration_error
from rag.models.reader import QA_FEATURES, qa_consistency
from rag.models.registry import data_hash, write_model_manifest, writing_model
from rag.models.verify import FEATURES, LEXICAL_FEATURES, Calibrator, NLIVerifier, claim_features, hypothesis_for
from rag.train.claims import ClaimExample, build_claims, by_question, claim_pair, to_groups
from rag.train.loop import TrainConfig, fit, new_cross_encoder


def evaluate_verifier(verifier: NLIVerifier, examples: Sequence[ClaimExample], bins: int = 10) -> dict[str, float]:
    """Unsupported-claim detection (positive class: not supported) precision / recall / F1, accuracy of the
    three-way verdict, the expected calibration error of P(supported), and the recall of each planted error."""
    probs, truth, three = [], [], []
    caught: dict[str, list[bool]] = {}
    extra = [verifier.qa_features(ex.question, [ex.claim], ex.passages)[0] for ex in examples]
    all_scored = verifier.score_many([(hypothesis_for(ex.question, ex.claim), ex.passages) for ex in examples], extra)
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
    ece = expected_calibration_error(probs, [float(t) for t in truth], bins)
    return {
        "claims": len(examples),
        "unsupported_precision": round(precision, 4),
        "unsupported_recall": round(recall, 4),
        "unsupported_f1": round(f1, 4),
        "verdict_accuracy": round(float(np.mean(three)), 4),
        "ece": round(float(ece), 4),
        **{f"recall {kind}": round(float(np.mean(c)), 4) for kind, c in sorted(caught.items())},
    }


def fit_calibrator(verifier: NLIVerifier, examples: Sequence[ClaimExample], reader: Any = None) -> Calibrator:
    """Fit the logistic calibrator on held-out claims: the model's class probabilities (when the verifier has a
    model) and the lexical/numeric signal of each claim against its deciding passage; with ``reader``, also the
    reader's question-answering consistency there (:data:`~rag.models.reader.QA_FEATURES`)."""
    pairs = [claim_pair(ex) for ex in examples]
    has_model = verifier._model is not None
    probs = verifier.class_probs(pairs) if has_model else [None] * len(pairs)
    rows = [claim_features(hyp, prem, pr) for (prem, hyp), pr in zip(pairs, probs, strict=True)]
    names: tuple[str, ...] = FEATURES if has_model else LEXICAL_FEATURES
    if reader is not None:
        for row, ex in zip(rows, examples, strict=True):
            passage = ex.passages[max(0, ex.gold)]  # the deciding passage (a distractor for unsupported claims)
            row.update(qa_consistency(ex.claim, reader.read_each(ex.question, [passage])[0]))
        names = names + QA_FEATURES
    y = [1.0 if ex.label == 0 else 0.0 for ex in examples]
    return Calibrator.fit(rows, y, names)


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
