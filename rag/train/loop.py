"""Fine-tuning cross-encoders on CPU: the one training loop behind ``rag train reranker`` and ``rag train verifier``.

Three objectives over the same loop:

- ``listwise`` (rerankers): each example is a query with one positive and n negatives; the loss is softmax
  cross-entropy over the group's scores with the positive as target (what GPL, InPars and most cross-encoder
  fine-tuning recipes use; stronger than pointwise BCE with few labels).
- ``classify``: each example is one (premise, hypothesis) pair with a class label.
- ``contrast`` (verifiers): each example is the claims built from one question, the supported one first, each
  with its class; the loss is the pairs' class cross-entropy plus a listwise term on the "supported" logit (the
  supported pair must out-score the same claim with a swapped answer and the claim against the wrong passage).
  Pairs of one group differ in one span or one passage, so the gradient points at exactly what decides support;
  with per-pair classification alone a MiniLM head stayed at chance (loss ln 3) after 126 CPU steps, with the
  listwise term it learns within about 60.

The base is any sentence-transformers or Hugging Face encoder; offline that is the shipped all-MiniLM-L6-v2
(its classification head starts untrained). AdamW with linear warm-up and decay; seeded, so a run is repeatable
on one machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import ConfigError, MissingDependencyError
from rag.models.encoders import quiet_transformers, resolve_model_path, set_threads


@dataclass(frozen=True)
class Group:
    """One training example: ``pairs`` of (text_a, text_b); ``label`` is the class (classify) or the index of
    the positive pair (listwise, always 0 here); ``labels`` is each pair's class (contrast)."""

    pairs: tuple[tuple[str, str], ...]
    label: int = 0
    labels: tuple[int, ...] = ()


@dataclass
class TrainConfig:
    epochs: float = 1.0
    batch_pairs: int = 16
    lr: float = 7e-5
    warmup: float = 0.1
    head_lr_scale: float = 20.0
    max_length: int = 256
    max_steps: int = 0
    max_seconds: float = 0.0  # stop when this much time has passed (0: no limit); the schedule fits the steps left
    seed: int = 0
    threads: int | None = None
    progress: bool = True


@dataclass
class TrainStats:
    steps: int = 0
    examples: int = 0
    seconds: float = 0.0
    final_loss: float = 0.0
    losses: list[float] = field(default_factory=list)


def new_cross_encoder(base: str, num_labels: int, max_length: int) -> Any:
    """A CrossEncoder from ``base`` (HF id, path, or ``default`` = the shipped MiniLM) with a fresh head."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("sentence-transformers", purpose="training small models") from e
    quiet_transformers(errors_only=True)
    path = resolve_model_path(base)
    try:
        return CrossEncoder(path, num_labels=num_labels, max_length=max_length)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load base model {base!r} for training ({e}); pass a local model directory") from e


def fit(
    model: Any,
    groups: Sequence[Group],
    objective: Literal["listwise", "classify", "contrast"],
    config: TrainConfig,
) -> TrainStats:
    """Train ``model`` (a CrossEncoder) in place on ``groups``; returns the loss curve and timings."""
    import torch
    from tqdm import tqdm

    if not groups:
        raise ConfigError("no training examples")
    set_threads(config.threads)
    torch.manual_seed(config.seed)
    net, tok = model[0].auto_model, model.tokenizer
    net.train()
    mean_size = sum(len(g.pairs) for g in groups) / len(groups)
    groups_per_step = max(1, int(config.batch_pairs / mean_size))
    total = max(1, round(max(1, -(-len(groups) // groups_per_step)) * config.epochs))
    if config.max_steps:
        total = min(total, config.max_steps)
    plan = [total]  # the schedule's length: shortened once the time limit shows how many steps fit
    opt, sched = make_optimizer(net, config, plan)
    stats = TrainStats()
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"training ({objective})", unit="step", disable=not config.progress)
    for step, batch in zip(range(total), _batches(groups, groups_per_step, config.seed), strict=False):
        if step >= plan[0] or (config.max_seconds and time.perf_counter() - t0 > config.max_seconds):
            break
        loss = _loss(net, tok, batch, objective, config.max_length)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        stats.losses.append(float(loss.detach()))
        stats.steps = step + 1
        stats.examples += len(batch)
        bar.update(1)
        if config.max_seconds and step in (4, 20):  # enough steps to know their pace, and again once warm
            pace = (time.perf_counter() - t0) / (step + 1)
            plan[0] = min(total, max(step + 1, int(config.max_seconds / pace)))
            bar.total = plan[0]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(stats.losses[-50:]) / len(stats.losses[-50:]):.3f}")
    bar.close()
    net.eval()
    stats.seconds = round(time.perf_counter() - t0, 1)
    tail = stats.losses[-50:]
    stats.final_loss = round(sum(tail) / len(tail), 4)
    return stats


def make_optimizer(net: Any, config: TrainConfig, plan: list[int]) -> tuple[Any, Any]:
    """AdamW with a linear warm-up and decay over ``plan[0]`` steps. The new head (and the pooler, unused by
    sentence-transformers models) learns ``head_lr_scale`` times faster: with a few hundred steps on CPU, a head at
    the encoder's rate barely leaves its random start. ``plan[0]`` is the number of steps; it may shrink while
    training (a time limit), and the decay follows it."""
    import torch

    params: dict[tuple[bool, bool], list[Any]] = {}
    for n, p in net.named_parameters():
        head = n.startswith(("classifier", "pooler", "bert.pooler", "score", "qa_outputs"))
        decay = not any(x in n for x in ("bias", "LayerNorm.weight", "layer_norm"))
        params.setdefault((head, decay), []).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": ps, "lr": config.lr * (config.head_lr_scale if head else 1.0), "weight_decay": 0.01 * decay}
            for (head, decay), ps in params.items()
        ],
        lr=config.lr,
    )
    warm = max(1, int(plan[0] * config.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (plan[0] - s) / max(1, plan[0] - warm))
    )
    return opt, sched


def _batches(groups: Sequence[Group], size: int, seed: int) -> Iterator[list[Group]]:
    """Batches of ``size`` groups, endlessly, each epoch in a fresh seeded order (an epoch's tail is carried over)."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < size:
            fresh = list(range(len(groups)))
            rng.shuffle(fresh)
            order.extend(fresh)
        yield [groups[i] for i in order[:size]]
        del order[:size]


def _loss(net: Any, tok: Any, batch: Sequence[Group], objective: str, max_length: int) -> Any:
    """The batch's loss under ``objective`` (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    pairs = [p for g in batch for p in g.pairs]
    enc = tok(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    ).to(net.device)  # a GPU when the model is on one (sentence-transformers puts it there when CUDA is visible)
    logits = net(**enc).logits
    if objective == "contrast":
        return _contrast_loss(logits, batch)
    if objective == "listwise":
        logits = logits.view(len(batch), len(batch[0].pairs))
    return F.cross_entropy(logits, torch.tensor([g.label for g in batch], dtype=torch.long, device=logits.device))


def _contrast_loss(logits: Any, batch: Sequence[Group]) -> Any:
    """Class cross-entropy over every pair, plus listwise cross-entropy of column 0 ("supported") within each group
    whose first pair is supported and that has something to contrast it with."""
    import torch
    import torch.nn.functional as F

    labels = torch.tensor([c for g in batch for c in g.labels], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits, labels)
    first = torch.zeros(1, dtype=torch.long, device=logits.device)
    listwise = [
        F.cross_entropy(scores.unsqueeze(0), first)
        for scores, g in zip(logits[:, 0].split([len(g.pairs) for g in batch]), batch, strict=True)
        if len(g.pairs) > 1 and g.labels[0] == 0
    ]
    return loss + torch.stack(listwise).mean() if listwise else loss
