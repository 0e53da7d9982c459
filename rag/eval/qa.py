"""Answer quality: exact match and token F1 as in the SQuAD / HotpotQA / FlashRAG evaluation scripts.

Normalisation lower-cases, removes punctuation, the articles a/an/the and extra whitespace. A prediction is
scored against every gold answer and the best score counts. ``[n]`` citation markers are removed from the
prediction first, and an abstention scores 0.

Example:
    >>> round(token_f1("It was the Denver Broncos [1].", ["Denver Broncos"]), 3)
    0.667
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_CITE = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    text = _CITE.sub(" ", text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction).split()
    best = 0.0
    for a in answers:
        gold = normalize_answer(a).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if not pred or not gold or common == 0:
            best = max(best, float(pred == gold))
            continue
        p, r = common / len(pred), common / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best
