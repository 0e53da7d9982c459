"""Distributed indexing with Ray Data: files are read, chunked and embedded on a Ray cluster, and the driver
writes the results into the collection (a directory or the PostgreSQL store) in batches of whole documents.

Pipeline: ``from_items(paths)`` → ``flat_map`` (read each file into documents, dropping those already stored
with the same content) → ``map_batches`` with an actor pool (each actor loads the collection's chunker and
encoder once, on a GPU when the cluster has them) → ``iter_batches`` on the driver → :meth:`Collection.add_chunked`.

Resumable: every driver batch is one committed write of whole documents, and a re-run skips documents whose
stored content hash matches, so after a failure nothing already embedded is embedded again. A worker that dies
mid-job is restarted and its batch retried (``max_restarts``); if the job fails anyway, what was committed is
whole documents and the re-run completes it. On several machines the files must be readable at the same path
from every node (a shared or network file system); see docs/scaling.md.

Example:
    >>> kb = Collection.open("postgresql://app@db/rag?collection=handbook")  # doctest: +SKIP
    >>> result, skipped = index_with_ray(kb, ["docs/"], workers=4)          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import MissingDependencyError
from rag.indexers.faults import worker_fault
from rag.indexers.writes import IndexResult
from rag.types import Doc, content_id

if TYPE_CHECKING:
    from rag.connectors.common import Skipped
    from rag.indexers.collection import Collection


def _doc(row: dict[str, Any]) -> Doc:
    return Doc(text=row["text"], id=row["id"], meta=json.loads(row["meta"]))


class ReadFiles:
    """``flat_map`` step: one file → its documents as rows. A document stored with the same content becomes a
    bare row with ``same`` set (counted, never chunked or embedded again); an unreadable part a row with ``skip``
    (its source) and ``reason``."""

    def __init__(self, root: str | None, stored: dict[str, str]) -> None:
        self.root, self.stored = root, stored

    def __call__(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        from rag.connectors.files import read_file
        from rag.errors import SourceError

        try:
            docs, bad = read_file(item["path"], root=self.root)
        except SourceError as e:
            return [_row(skip=e.source, reason=e.reason)]
        rows = [_row(skip=s.path, reason=s.reason) for s in bad]
        for d in docs:
            if self.stored.get(d.id) == content_id(d.text, d.meta):
                rows.append(_row(id=d.id, same=True))
            else:
                rows.append(_row(id=d.id, text=d.text, meta=json.dumps(d.meta, ensure_ascii=False, default=str)))
        return rows


_KEYS = ("id", "text", "meta", "same", "skip", "reason")


def _row(**values: Any) -> dict[str, Any]:
    return {"id": "", "text": "", "meta": "{}", "same": False, "skip": "", "reason": "", **values}


class ChunkEmbed:
    """``map_batches`` actor: loads the chunker and the encoder once, then chunks and embeds batches of documents.
    Output: one row per document with its chunks (JSON) and their embeddings (float32 bytes)."""

    def __init__(self, chunk: dict[str, int], encoder: str | None, device: str | None) -> None:
        from rag.indexers.chunking import Chunker

        self.chunker = Chunker(**chunk)
        self.encoder = None
        if encoder is not None:
            from rag.models.encoders import SentenceTransformerEncoder

            self.encoder = SentenceTransformerEncoder(encoder, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from rag.indexers.store import index_text

        worker_fault()  # crash-test hook: the worker dies as a killed process would
        n = len(batch["id"])
        todo = [i for i in range(n) if not batch["skip"][i] and not batch["same"][i]]
        parts = {i: self.chunker.split(_doc({k: batch[k][i] for k in ("id", "text", "meta")})) for i in todo}
        texts = [index_text(c.text, c.meta) for i in todo for c in parts[i]]
        vecs = self.encoder.encode(texts).astype(np.float32) if self.encoder is not None and texts else None
        out: dict[str, list[Any]] = {k: [batch[k][i] for i in range(n)] for k in _KEYS}
        out["chunks"], out["vectors"] = ["[]"] * n, [b""] * n
        at = 0
        for i in todo:
            p = parts[i]
            out["chunks"][i] = json.dumps([[c.id, c.text, c.meta] for c in p], ensure_ascii=False, default=str)
            out["vectors"][i] = b"" if vecs is None else vecs[at : at + len(p)].tobytes()
            at += len(p)
        return out


def connect(address: str | None, workers: int | None) -> bool:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``) or start a local one bound to
    127.0.0.1 (``address`` None or ``local``). Returns True when this call started Ray (the caller shuts it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("ray", extra="ray", purpose="distributed indexing (--ray)") from e
    if ray.is_initialized():
        return False
    if address in (None, "", "local"):
        ray.init(
            num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return True


def index_with_ray(
    kb: Collection,
    paths: Sequence[str | Path],
    *,
    root: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 64,
    write_batch: int = 1000,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[IndexResult, list[Skipped]]:
    """Read, chunk and embed ``paths`` (files; folders are expanded) on Ray and add them to ``kb``.

    ``workers``: actors chunking and embedding (default: the cluster's CPUs, or its GPUs when it has them, one
    each). ``batch_size``: documents per actor call. ``write_batch``: documents per committed write.
    ``runtime_env``: Ray's runtime environment for the actors (``env_vars``, ``pip``, ...). Returns the summed
    :class:`IndexResult` and what was skipped (unreadable files and lines)."""
    from rag.connectors.files import iter_files
    from rag.indexers.writes import check_writable

    check_writable(kb)  # before any work on the cluster
    started = connect(address, workers)  # sets Ray's environment first (usage stats off), then imports it
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    try:
        files = [str(f) for p in paths for f in iter_files(p)]
        if not files:
            return IndexResult(), []
        stored = kb.hashes()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        n = workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
        info = kb.manifest.get("encoder")
        ds = (
            ray.data.from_items([{"path": f} for f in files], override_num_blocks=min(len(files), 4 * n))
            .flat_map(ReadFiles, fn_constructor_args=(None if root is None else str(root), stored), concurrency=n)
            .map_batches(
                ChunkEmbed,
                fn_constructor_args=(dict(kb.manifest["params"]["chunk"]), info and info["name"], None),
                batch_size=batch_size, concurrency=n, num_gpus=1 if gpus else 0,
                max_restarts=2, max_task_retries=2, runtime_env=runtime_env,
            )
        )  # fmt: skip
        with kb.bulk_load(len(files)):  # a large ingest: the store may build its ANN index once, at the end
            return _write(kb, ds, write_batch, dense=bool(info))
    finally:
        if started:
            ray.shutdown()


def _write(kb: Collection, ds: Any, write_batch: int, dense: bool) -> tuple[IndexResult, list[Skipped]]:
    """Add what the workers chunked and embedded to ``kb``, ``write_batch`` documents per committed write."""
    from rag.connectors.common import Skipped

    total, skipped, same = IndexResult(), [], 0
    for batch in _batches(ds, write_batch):
        items = []
        for row in batch:
            if row["skip"]:
                skipped.append(Skipped(str(row["skip"]), str(row["reason"])))
                continue
            if row["same"]:
                same += 1
                continue
            chunks = [Doc(text=t, id=i, meta=m) for i, t, m in json.loads(row["chunks"])]
            vecs = np.frombuffer(row["vectors"], dtype=np.float32).reshape(len(chunks), -1) if dense else None
            items.append((_doc(row), chunks, vecs))
        if items:
            total = _sum(total, kb.add_chunked(items))
    return _sum(total, IndexResult(unchanged=same)), skipped


def _batches(ds: Any, size: int) -> Iterator[list[dict[str, Any]]]:
    for b in ds.iter_batches(batch_size=size, batch_format="numpy"):
        keys = list(b)
        yield [{k: b[k][i] for k in keys} for i in range(len(b[keys[0]]))]


def _sum(a: IndexResult, b: IndexResult) -> IndexResult:
    return IndexResult(**{k: getattr(a, k) + getattr(b, k) for k in vars(a)})
