"""Dense search speed: FAISS flat vs FAISS HNSW vs numpy brute force, at 100k x 384.

Vectors are unit-norm and clustered (a Gaussian mixture around 1,000 centres, like sentence
embeddings rather than uniform noise, on which no ANN index works). Queries are perturbed corpus
vectors. recall@10 is measured against exact search. The memory-bandwidth bound is the best q/s a
one-query-at-a-time exact scan can reach: bandwidth / (n x dim x 4 bytes), with the bandwidth
measured here by numpy summing a 1 GiB array.

    python benchmarks/dense_speed.py [--n 100000] [--dim 384] [--queries 1000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rag.indexers.dense import DenseIndex, DenseParams


def data(n: int, dim: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    x = centres[rng.integers(0, 1000, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, nq)] + 0.3 * rng.standard_normal((nq, dim)).astype(np.float32) / np.sqrt(dim)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q.astype(np.float32)


def bandwidth_gbs() -> float:
    """Read bandwidth with every core reading its own part of a 1 GiB array (numpy frees the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(1 << 28, dtype=np.float32)
    parts = np.array_split(a, os.cpu_count() or 1)
    with ThreadPoolExecutor(len(parts)) as pool:

        def read_all() -> None:
            list(pool.map(np.sum, parts))

        read_all()
        best = min(_timed(read_all) for _ in range(3))
    return a.nbytes / best / 1e9


def _timed(f, *args) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def numpy_search(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    sims = q @ x.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    args = ap.parse_args()
    k = 10
    x, q = data(args.n, args.dim, args.queries)
    ids = np.arange(args.n, dtype=np.int64)
    bw = bandwidth_gbs()
    bound = bw * 1e9 / (args.n * args.dim * 4)
    print(
        f"# {args.n} x {args.dim} float32 ({x.nbytes / 1e6:.0f} MB), {args.queries} queries, k={k}, "
        f"{os.cpu_count()} cores; memory bandwidth {bw:.1f} GB/s -> one-query exact-scan bound {bound:.0f} q/s"
    )
    exact = numpy_search(x, q, k)
    print(f"{'system':<26} {'build s':>8} {'q/s batch':>10} {'q/s single':>11} {'recall@10':>10}")

    def report(name: str, build: float, batch_fn, single_fn) -> None:  # type: ignore[no-untyped-def]
        batch_fn(q[:8])
        t_batch = _timed(batch_fn, q)
        t_single = _timed(lambda: [single_fn(q[i : i + 1]) for i in range(args.single)])
        found = batch_fn(q)
        rec = np.mean([len(set(found[i]) & set(exact[i])) / k for i in range(len(q))])
        print(
            f"{name:<26} {build:>8.1f} {len(q) / t_batch:>10.0f} {args.single / t_single:>11.0f} {rec:>10.4f}",
            flush=True,
        )

    report("numpy brute force", 0.0, lambda qq: numpy_search(x, qq, k), lambda qq: numpy_search(x, qq, k))
    for name, params in [
        ("faiss flat (pilotfish)", DenseParams(kind="flat")),
        ("faiss hnsw M=32 ef=128", DenseParams(kind="hnsw", m=32, ef_search=128)),
        ("faiss hnsw M=32 ef=32", DenseParams(kind="hnsw", m=32, ef_search=32)),
        ("faiss ivf 1024/16", DenseParams(kind="ivf", nlist=1024, nprobe=16)),
    ]:
        idx = DenseIndex(args.dim, params)
        build = _timed(idx.add, ids, x)
        report(name, build, lambda qq, idx=idx: idx.search(qq, k)[0], lambda qq, idx=idx: idx.search(qq, k)[0])


if __name__ == "__main__":
    main()
