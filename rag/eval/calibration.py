"""Calibration of predicted probabilities: expected calibration error over equal-width bins."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def expected_calibration_error(probs: Sequence[float], labels: Sequence[float], bins: int = 10) -> float:
    """ECE: the mean |accuracy - confidence| over ``bins`` equal-width bins of ``probs``, weighted by each bin's
    share (the last bin includes 1.0); ``labels`` are 1 for a right prediction, 0 otherwise."""
    pr, tr = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    ece = 0.0
    for lo, hi in itertools.pairwise(np.linspace(0, 1, bins + 1)):
        m = (pr >= lo) & ((pr < hi) if hi < 1 else (pr <= hi))
        if m.any():
            ece += m.mean() * abs(pr[m].mean() - tr[m].mean())
    return float(ece)
