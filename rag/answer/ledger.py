"""The ledger of one question: what each stage took in and gave out, its model, milliseconds and tokens.

Every stage writes one entry; :meth:`Ledger.trace` turns the entries into ``Answer.trace`` (see
:class:`~rag.types.Answer`): the question, the policy, the stages in order, the total time, the prompt and
completion tokens, the evidence flagged as planted instructions and whether the question reads like one.

Example:
    >>> ledger = Ledger()
    >>> t = time.perf_counter()
    >>> ledger.add("retrieve", t, "hybrid", output=["a", "b"])
    >>> [s["stage"] for s in ledger.trace("q", "flag")["stages"]]
    ['retrieve']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def model_name(obj: object) -> str | None:
    """How the ledger names a part: its ``name`` or ``model_name``, else its class (None for no part)."""
    if obj is None:
        return None
    for attr in ("name", "model_name"):
        value = getattr(obj, attr, None)
        if isinstance(value, str):
            return value
    return type(obj).__name__


@dataclass
class Ledger:
    """The entries of one question's stages, in the order they ran."""

    stages: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, t: float, model: str | None = None, **info: Any) -> None:
        """Record ``stage``, started at ``t`` (``time.perf_counter()``), run by ``model``, with its ``info``."""
        self.stages.append({"stage": stage, "ms": round((time.perf_counter() - t) * 1000, 2), "model": model, **info})

    def trace(self, question: str, policy: str) -> dict[str, Any]:
        """``Answer.trace`` as of now."""
        stages = self.stages
        return {
            "question": question,
            "policy": policy,
            "stages": stages,
            "total_ms": round((time.perf_counter() - self.t0) * 1000, 2),
            "prompt_tokens": sum(s.get("prompt_tokens", 0) for s in stages),
            "completion_tokens": sum(s.get("completion_tokens", 0) for s in stages),
            "flagged_injection": sorted({d for s in stages for d in s.get("flagged_injection", [])}),
            "question_injection": any(s.get("question_injection") for s in stages),
        }
