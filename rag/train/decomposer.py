"""Training the learned decomposer (:class:`~rag.models.decompose.learned.LearnedDecomposer`): its data and fit.

:func:`train_decomposer` builds the training set from the benchmark data folder (``../shared/data``; see its
README.md) or reads a JSONL file of ``{"question", "label"}``, holds out a fifth (stratified) to report accuracy
per label, fits the head with numpy (seconds) and saves it as ``head.npz`` (no pickle) with a
``pilotfish-model.json`` manifest.

Sources from the data folder: HotpotQA dev questions (``meta.jsonl`` type: bridge / comparison), SQuAD v1.1 and
NQ-open questions (single), WikiTableQuestions questions (table), and tool questions written from templates with
a seeded RNG.

Example:
    >>> train_decomposer("../shared/data", "models/decomposer/default", "default")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.datasets import load_queries
from rag.errors import ConfigError, SourceError
from rag.models.decompose.learned import HEAD_FILE, LABELS, RULE_FEATURES, features, softmax
from rag.models.encoders import SentenceTransformerEncoder
from rag.models.registry import data_hash, write_model_manifest, writing_model

HOTPOT, SQUAD, NQ, WTQ = "hotpotqa_dev_distractor_sample", "squad_v1.1_dev", "nq_open_oracle", "wikitablequestions"


def read_labelled(path: str | Path) -> list[dict[str, str]]:
    """Read a JSONL file of ``{"question": ..., "label": ...}`` (labels: single, bridge, comparison, table, tool).

    Raises:
        SourceError: a missing file, a line that is not a JSON object, an empty question or an unknown label
            (named by ``path:line``), or a file with no examples.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(str(path), 'no such file; expected JSONL lines {"question": ..., "label": ...}')
    out: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(where, f'not valid JSON ({e.msg}); expected {{"question": ..., "label": ...}}') from e
            if not isinstance(rec, dict):
                raise SourceError(where, f'expected an object {{"question": ..., "label": ...}}, got {rec!r:.60}')
            q, label = rec.get("question"), rec.get("label")
            if not isinstance(q, str) or not q.strip():
                raise SourceError(where, f"empty or missing question (got {q!r}); every line needs a question")
            if label not in LABELS:
                raise SourceError(where, f"unknown label {label!r}; use one of {', '.join(LABELS)}")
            out.append({"question": q.strip(), "label": str(label), "source": path.name})
    if not out:
        raise SourceError(str(path), "holds no examples")
    return out


_UNIT_PAIRS = [tuple(p.split(">")) for p in (
    "miles>km km>miles pounds>kg kg>pounds feet>meters inches>cm celsius>fahrenheit fahrenheit>celsius "
    "gallons>liters ounces>grams hours>minutes dollars>euros GB>MB acres>hectares"
).split()]  # fmt: skip
_MONTHS = "January February March April May June July August September October November December".split()
_TEMPLATES = [
    "What is {a} {op} {b}?", "what's {a} {op} {b}", "Calculate {a} {op} {b}.", "{a} {op} {b} = ?",
    "How much is {a} {word} {b}?", "What is {p}% of {n}?", "How much is {p} percent of {n}?",
    "What is {n} increased by {p}%?", "What is the tip on a ${n} bill at {p}%?", "Convert {n} {u} to {v}.",
    "How many {v} are in {n} {u}?", "What is {n} {u} in {v}?", "{n} {u} to {v}", "What day is it today?",
    "What is today's date?", "What time is it right now?", "What year is it?", "How many days until {m} {d}?",
    "What day of the week was {m} {d}, {y}?", "What is the date {n} days from now?",
    "How many days between {m} {d} and {m2} {d2}?", "What is the square root of {n}?",
    "What is {a} to the power of {b}?", "How many years ago was {y}?", "What is {a} squared?",
    "If I split ${n} between {b} people, how much does each get?", "What is {a} divided by {b}?",
]  # fmt: skip


def synth_tool_questions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct tool questions (arithmetic, percentages, unit conversion, dates) from templates."""
    rng = random.Random(seed)
    ops = [("+", "plus"), ("-", "minus"), ("*", "times"), ("/", "divided by"), ("x", "multiplied by")]
    out: dict[str, None] = {}
    for _ in range(n * 20):
        if len(out) >= n:
            break
        op, word = rng.choice(ops)
        u, v = rng.choice(_UNIT_PAIRS)
        t = rng.choice(_TEMPLATES).format(
            a=rng.randint(2, 999), b=rng.randint(2, 99), op=op, word=word, p=rng.choice([5, 10, 12.5, 15, 18, 20, 25]),
            n=rng.choice([rng.randint(2, 500), round(rng.uniform(1, 100), 1)]), u=u, v=v, m=rng.choice(_MONTHS),
            m2=rng.choice(_MONTHS), d=rng.randint(1, 28), d2=rng.randint(1, 28), y=rng.randint(1900, 2024),
        )  # fmt: skip
        out[t.lower() if rng.random() < 0.3 else t] = None
    return list(out)


def _queries(path: Path) -> dict[str, str]:
    return load_queries(path / "queries.jsonl")


def build_records(
    data_dir: str | Path, max_per_label: int = 1500, seed: int = 0, exclude: Iterable[str] = ()
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Labelled questions from the benchmark data folder, at most ``max_per_label`` per label (seeded sample),
    leaving out questions whose id or text is in ``exclude``. Returns (records, counts per source)."""
    root = Path(data_dir)
    have = [d for d in (HOTPOT, SQUAD, NQ, WTQ) if (root / d / "queries.jsonl").is_file()]
    if not have:
        raise SourceError(
            str(root), f"not a data folder: needs {HOTPOT}/, {SQUAD}/, {NQ}/ or {WTQ}/ with queries.jsonl "
            "(pass ../shared/data, or a JSONL file of {question, label})",
        )  # fmt: skip
    skip = set(exclude)
    by_label: dict[str, list[dict[str, str]]] = {lab: [] for lab in LABELS}

    def add(label: str, source: str, qs: dict[str, str]) -> None:
        for qid, q in qs.items():
            if qid not in skip and q not in skip and q.strip():
                by_label[label].append({"id": qid, "question": q.strip(), "label": label, "source": source})

    if HOTPOT in have:
        qs = _queries(root / HOTPOT)
        types: dict[str, str] = {}
        meta = root / HOTPOT / "meta.jsonl"
        if meta.is_file():
            for line in meta.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    m = json.loads(line)
                    types[str(m["_id"])] = str(m.get("type"))
        for t in ("bridge", "comparison"):
            add(t, HOTPOT, {q: qs[q] for q in qs if types.get(q) == t})
    rng = random.Random(seed)
    singles = [d for d in (SQUAD, NQ) if d in have]
    for d in singles:  # an even share of the single-hop quota from each source
        qs = _queries(root / d)
        ids = sorted(qs)
        rng.shuffle(ids)
        add("single", d, {q: qs[q] for q in ids[: max_per_label // len(singles) + 1]})
    if WTQ in have:
        add("table", WTQ, _queries(root / WTQ))
    add("tool", "templates", {f"tool{i}": q for i, q in enumerate(synth_tool_questions(min(max_per_label, 400), seed))})
    records: list[dict[str, str]] = []
    for lab in LABELS:
        recs = by_label[lab]
        if len(recs) > max_per_label:
            recs = random.Random(seed).sample(recs, max_per_label)
        records += recs
    return records, dict(Counter(r["source"] for r in records))


def split_heldout(records: Sequence[dict[str, str]], frac: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) record indices: ``frac`` of each label held out (none of labels with < 5 examples)."""
    rng = random.Random(seed)
    train: list[int] = []
    held: list[int] = []
    for lab in LABELS:
        idx = [i for i, r in enumerate(records) if r["label"] == lab]
        rng.shuffle(idx)
        n = int(len(idx) * frac) if len(idx) >= 5 else 0
        held += idx[:n]
        train += idx[n:]
    return sorted(train), sorted(held)


def fit_softmax(
    x: np.ndarray, y: np.ndarray, n_labels: int, steps: int = 400, lr: float = 0.05, l2: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression by full-batch Adam; returns ``(W, b)``."""
    n, d = x.shape
    onehot = np.eye(n_labels, dtype=np.float32)[y]
    counts = np.maximum(onehot.sum(0), 1)
    sample_w = (n / (n_labels * counts))[y][:, None].astype(np.float32)
    params = [np.zeros((d, n_labels), np.float32), np.zeros(n_labels, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        g = (softmax(x @ params[0] + params[1]) - onehot) * sample_w / n
        grads = [x.T @ g + l2 * params[0], g.sum(0)]
        for i, gi in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * gi
            v[i] = 0.999 * v[i] + 0.001 * gi * gi
            params[i] -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return params[0], params[1]


def _encode(encoder: Any, texts: list[str], progress: bool, batch: int = 256) -> np.ndarray:
    from tqdm import tqdm

    parts = [
        encoder.encode(texts[i : i + batch])
        for i in tqdm(range(0, len(texts), batch), desc="embedding questions", unit="batch", disable=not progress)
    ]
    return np.concatenate(parts).astype(np.float32)


def heldout_scores(logits: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy overall and per label of the held-out predictions (``logits``: one row per example)."""
    metrics: dict[str, Any] = {"heldout_examples": len(y), "heldout_accuracy": None, "per_label": {}}
    if not len(y):
        return metrics
    pred = logits.argmax(1)
    metrics["heldout_accuracy"] = round(float((pred == y).mean()), 4)
    for i, lab in enumerate(labels):
        mask = y == i
        if mask.any():
            metrics["per_label"][lab] = {"accuracy": round(float((pred[mask] == i).mean()), 4), "n": int(mask.sum())}
    return metrics


def _training_data(
    data_dir: str | Path, max_per_label: int, seed: int, exclude: set[str]
) -> tuple[list[dict[str, str]], dict[str, int], tuple[str, ...]]:
    """(records, counts per source, the labels present) from a JSONL file or the benchmark data folder."""
    if Path(data_dir).is_file():
        records = read_labelled(data_dir)
        sources = dict(Counter(r["source"] for r in records))
    else:
        records, sources = build_records(data_dir, max_per_label, seed, exclude)
    labels = tuple(lab for lab in LABELS if any(r["label"] == lab for r in records))
    if len(labels) < 2:
        raise ConfigError(f"training data {data_dir} holds only the label(s) {labels}; a classifier needs two or more")
    return records, sources, labels


def train_decomposer(
    data_dir: str | Path,
    dest: str | Path,
    name: str,
    *,
    force: bool = False,
    base: str = "default",
    max_per_label: int = 1500,
    seed: int = 0,
    progress: bool = True,
    exclude: Iterable[str] = (),
    threshold: float = 0.5,
    encoder: Any = None,
) -> dict[str, Any]:
    """Train a question-type classifier and save it at ``dest``; returns the manifest.

    Args:
        data_dir: the benchmark data folder (``../shared/data``) or a JSONL file of ``{"question", "label"}``.
        dest: the model directory to write (see :func:`rag.models.registry.model_dir` for registered names).
        name: the model's name in its manifest. force: overwrite an existing ``dest``.
        base: the encoder (``default``: the shipped all-MiniLM-L6-v2). max_per_label: cap per label (data
            folder only; a JSONL file is used whole).
        seed: sampling, template and hold-out seed. exclude: question ids or texts to leave out (e.g. the
            questions a benchmark will ask). threshold: the confidence below which the rules decide.
        encoder: an already-loaded Encoder for ``base`` (saves loading it again).

    Raises:
        ConfigError: ``dest`` exists and ``force`` is false, or the data holds fewer than two labels.
        SourceError: unreadable or invalid training data.
    """
    if Path(dest).exists() and not force:
        raise ConfigError(f"{dest} already holds a model; pass --force (force=True) to overwrite it.")
    if max_per_label < 1 or not 0 <= threshold <= 1:
        raise ConfigError(f"max_per_label must be >= 1 and threshold in [0, 1]; got {max_per_label}, {threshold}")
    t0 = time.perf_counter()
    exclude = set(exclude)
    records, sources, labels = _training_data(data_dir, max_per_label, seed, exclude)
    if encoder is None:
        encoder = SentenceTransformerEncoder(base)
    questions = [r["question"] for r in records]
    x = features(_encode(encoder, questions, progress), questions)
    y = np.array([labels.index(r["label"]) for r in records])
    train, held = split_heldout(records, 0.2, seed)
    w, b = fit_softmax(x[train], y[train], len(labels))
    metrics = heldout_scores(x[held] @ w + b, y[held], labels)
    training = {
        "data_sha256": data_hash(records),
        "examples": len(records),
        "train_examples": len(train),
        "seconds": round(time.perf_counter() - t0, 2),
        "sources": sources,
        "labels": dict(Counter(r["label"] for r in records)),
        "excluded": len(exclude),
        "seed": seed,
        "data": str(data_dir),
    }
    settings = {
        "labels": list(labels),
        "threshold": threshold,
        "encoder": str(getattr(encoder, "name", base)),
        "features": ["embedding", *RULE_FEATURES],
    }
    with writing_model(dest, force=force) as tmp:
        np.savez(tmp / HEAD_FILE, W=w.astype(np.float32), b=b.astype(np.float32))
        return write_model_manifest(
            tmp, "decomposer", name, base, settings=settings, training=training, metrics=metrics
        )
