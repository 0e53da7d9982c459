"""The dense index: FAISS over normalised embeddings (inner product = cosine), keyed by chunk ordinal.

Kinds: ``flat`` (exact; default), ``hnsw`` (graph ANN; ``m``, ``ef_search``) and ``ivf`` (inverted
lists, trained on the first batch added; ``nlist``, ``nprobe``). Filtered searches pass a FAISS id
selector; small allowed sets are searched exactly. When a GPU is visible, unfiltered flat search runs on it:
through faiss when faiss was built with GPU support, else as a matrix product in torch (:class:`TorchFlat`);
the results are the same as on CPU (up to the order of exact ties). ``PILOTFISH_GPU=0`` keeps search on the
CPU. Saved with ``faiss.write_index`` (no pickle).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexFormatError, MissingDependencyError


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("faiss-cpu", purpose="dense retrieval") from e
    return faiss


@dataclass(frozen=True)
class DenseParams:
    """Index kind and its knobs."""

    kind: str = "flat"
    m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int = 1024
    nprobe: int = 16

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "hnsw", "ivf"):
            raise ConfigError(f"unknown dense index kind {self.kind!r}; use flat, hnsw or ivf")


_CPU = object()  # a searcher slot's "looked, no GPU"


def gpu_searcher(index: Any) -> Any:
    """A GPU copy of a flat index: faiss's own when it has GPU support, else :class:`TorchFlat` on CUDA; None
    without a GPU. Torch is used only when already imported (a sentence-transformers encoder loads it): with
    another encoder, importing torch (about 2 s) to look for a GPU would cost more than a CPU search saves."""
    faiss = _faiss()
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    torch = sys.modules.get("torch")
    return TorchFlat(index, "cuda") if torch is not None and torch.cuda.is_available() else None


class TorchFlat:
    """Exact inner-product search of a flat faiss index (``IndexIDMap2(IndexFlatIP)``) as a matrix product and
    top-k in torch on ``device``; ``search`` has faiss's signature. Queries go in blocks of ``block`` so the
    score matrix stays bounded."""

    def __init__(self, index: Any, device: str, block: int = 1024) -> None:
        import torch

        faiss = _faiss()
        n = int(index.ntotal)
        self.device, self.block = device, block
        self.ids = torch.from_numpy(faiss.vector_to_array(index.id_map).astype(np.int64)).to(device)
        self.vecs = torch.from_numpy(index.index.reconstruct_n(0, n)).to(device)

    def search(self, q: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        scores, ids = [], []
        with torch.inference_mode():
            for i in range(0, len(q), self.block):
                sims = torch.from_numpy(q[i : i + self.block]).to(self.device) @ self.vecs.T
                top = torch.topk(sims, k, dim=1)
                scores.append(top.values.cpu().numpy())
                ids.append(self.ids[top.indices].cpu().numpy())
        return np.vstack(scores), np.vstack(ids)


class DenseIndex:
    """Vectors by integer id with add, remove and (filtered) top-k inner-product search."""

    def __init__(self, dim: int, params: DenseParams | None = None) -> None:
        self.dim = dim
        self.params = params or DenseParams()
        self.index = self._new()
        self._gpu: Any = None

    def _new(self) -> Any:
        faiss, p = _faiss(), self.params
        if p.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if p.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, p.m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = p.ef_construction
            return faiss.IndexIDMap2(base)
        return None  # ivf: created when the first batch arrives (it trains on it)

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ConfigError(f"expected vectors of dimension {self.dim}, got shape {vecs.shape}")
        if self.index is None:
            faiss = _faiss()
            nlist = max(1, min(self.params.nlist, len(vecs) // 39))
            quant = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quant, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(vecs)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            self.index = ivf
        self.index.add_with_ids(vecs, np.asarray(ids, dtype=np.int64))
        self._gpu = None

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0 or self.index is None:
            return
        faiss = _faiss()
        ids = np.asarray(ids, dtype=np.int64)
        if self.params.kind == "hnsw":  # HNSW cannot remove: rebuild from the kept vectors
            all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            keep = all_ids[~np.isin(all_ids, ids)]
            vecs = self.reconstruct(keep)
            self.index = self._new()
            self.add(keep, vecs)
        elif self.params.kind == "ivf":  # the hashtable direct map needs an array selector
            ids = np.ascontiguousarray(ids)
            self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self._gpu = None

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = np.ascontiguousarray(ids, dtype=np.int64)
        try:
            return np.asarray(self.index.reconstruct_batch(keys), dtype=np.float32)  # one call, ~6x the loop
        except (RuntimeError, AttributeError):  # an index type without it
            return np.vstack([self.index.reconstruct(int(i)) for i in keys]).astype(np.float32)

    def _searcher(self) -> Any:
        if self.params.kind != "flat" or os.environ.get("PILOTFISH_GPU", "auto") == "0":
            return self.index
        if self._gpu is None:
            gpu = gpu_searcher(self.index)
            self._gpu = _CPU if gpu is None else gpu
        return self.index if self._gpu is _CPU else self._gpu

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(ids, scores)`` of shape (nq, k); missing results are id -1."""
        faiss, p = _faiss(), self.params
        q = np.ascontiguousarray(queries, dtype=np.float32)
        nq = len(q)
        if self.index is None or len(self) == 0 or (allowed is not None and len(allowed) == 0):
            return np.full((nq, k), -1, dtype=np.int64), np.zeros((nq, k), dtype=np.float32)
        if allowed is not None and (p.kind != "flat" or len(allowed) <= 4 * k) and len(allowed) <= 20_000:
            return self._exact(q, k, np.asarray(allowed, dtype=np.int64))
        params = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if p.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(p.ef_search, k))
        elif p.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=p.nprobe)
        elif allowed is not None:
            params = faiss.SearchParameters()
        if allowed is not None and params is not None:
            params.sel = sel
        index = self._searcher() if allowed is None else self.index
        kk = min(k, len(self))
        scores, ids = index.search(q, kk, params=params) if params is not None else index.search(q, kk)
        if kk < k:
            ids = np.hstack([ids, np.full((nq, k - kk), -1, dtype=np.int64)])
            scores = np.hstack([scores, np.zeros((nq, k - kk), dtype=np.float32)])
        return ids.astype(np.int64), scores.astype(np.float32)

    def _exact(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vecs = self.reconstruct(allowed)
        sims = q @ vecs.T
        kk = min(k, len(allowed))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
        ids = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.zeros((len(q), k), dtype=np.float32)
        ids[:, :kk] = allowed[top]
        scores[:, :kk] = np.take_along_axis(sims, top, axis=1)
        return ids, scores

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "params": asdict(self.params)}

    def save(self, path: str | Path) -> None:
        faiss = _faiss()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if self.index is None:
            tmp.write_bytes(b"")
        else:
            faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, dim: int, params: DenseParams) -> DenseIndex:
        faiss = _faiss()
        idx = cls(dim, params)
        if Path(path).stat().st_size == 0:
            idx.index = None
            return idx
        try:
            idx.index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexFormatError(f"cannot read dense index {path}: {e}; rebuild the collection") from e
        if idx.index.d != dim:
            raise IndexFormatError(f"dense index {path} has dimension {idx.index.d}, manifest says {dim}")
        if params.kind == "ivf":
            idx.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return idx
