"""Stand-ins for the LLM: scripted answers, optionally streamed slowly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any


class Scripted:
    """A generator that answers with fixed texts in turn (to drive the policies through known claims)."""

    name = "scripted"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[Any] = []

    def generate(self, prompt: Any, max_new_tokens: int | None = None) -> str:
        self.prompts.append(prompt)
        return self.answers[min(len(self.prompts), len(self.answers)) - 1]

    def stream(self, prompt: Any, max_new_tokens: int | None = None) -> Iterator[str]:
        for i, word in enumerate(self.generate(prompt).split(" ")):
            yield word if i == 0 else f" {word}"


class Slow(Scripted):
    """Scripted answers streamed a word every ``delay`` seconds (so streaming can be watched); records whether
    its stream was closed."""

    def __init__(self, *answers: str, delay: float = 0.03) -> None:
        super().__init__(*answers)
        self.delay, self.closed = delay, threading.Event()

    def stream(self, prompt: Any, max_new_tokens: int | None = None) -> Iterator[str]:
        try:
            for piece in super().stream(prompt, max_new_tokens):
                time.sleep(self.delay)
                yield piece
        finally:
            self.closed.set()
