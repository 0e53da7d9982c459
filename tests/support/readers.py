"""A reader whose answers are known: a QA model with fixed logits over the real MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rag.models.reader import Reader


class KnownLogits:
    """A QA model whose start logits peak on token ``first`` and end logits on token ``last`` (word pieces of the
    real MiniLM tokenizer); with ``null`` the [CLS] token beats them."""

    def __init__(self, tok: Any, first: str, last: str, null: bool = False) -> None:
        import torch

        self.device = torch.device("cpu")
        self.first, self.last = tok.convert_tokens_to_ids(first), tok.convert_tokens_to_ids(last)
        self.null = null

    def __call__(self, input_ids: Any, **_: Any) -> Any:
        start = (input_ids == self.first).float() * 8.0
        end = (input_ids == self.last).float() * 8.0
        if self.null:
            start[:, 0], end[:, 0] = 12.0, 12.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def known_reader(tmp_path: Path, first: str, last: str, null: bool = False, **kw: Any) -> Reader:
    from transformers import AutoTokenizer

    from rag.models.encoders import resolve_model_path

    reader = Reader(tmp_path, **kw)  # a directory: nothing is loaded until the first read
    reader._tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    reader._model = KnownLogits(reader._tok, first, last, null)
    return reader
