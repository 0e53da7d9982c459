"""GPU against CPU on one machine: MiniLM encoding (passages/s) and dense search at 1M x 384 (queries/s).

Encoding goes through pilotfish's own encoder (``SentenceTransformerEncoder``, device ``cuda`` and ``cpu``);
search through ``DenseIndex`` (flat: faiss on the CPU, and the GPU searcher — faiss-gpu when installed, else
torch's matrix product and top-k, :class:`~rag.indexers.dense.TorchFlat`), plus faiss IVF on the CPU for
reference. The vectors are synthetic unit vectors in 2,000 clusters (flat search speed does not depend on where
they came from; IVF recall does, so it is indicative only); the passages are synthetic sentences of 40-80
words. The GPU's top-10 is checked against the CPU's, and its embeddings against the CPU's.

    python benchmarks/gpu.py                       # 1M x 384, 1000 queries, 20k passages
    python benchmarks/gpu.py --n 100000 --passages 2000   # a quick look on a CPU-only machine

Figures are printed, never asserted; both sides run in the same process on the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

WORDS = (
    "policy keys rotate office lunch travel expense report vpn laptop holiday badge visitor desk admin "
    "console password breach network printer parking floor meeting budget review contract invoice"
).split()


def passages(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(40, 81)))) + "." for _ in range(n)]


def timed(fn, *args, repeat: int = 1, **kw):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t0)
    return best, out


def encode_speed(model: str, texts: list[str], cpu_texts: int, batch: int) -> None:
    import torch

    from rag.models.encoders import SentenceTransformerEncoder

    rows = []
    devices = (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    ref = None
    for dev in devices:
        enc = SentenceTransformerEncoder(model, device=dev, batch_size=batch)
        some = texts if dev == "cuda" else texts[:cpu_texts]
        enc.encode(some[: batch * 2])  # warm up
        secs, vecs = timed(enc.encode, some)
        rows.append((dev, len(some), len(some) / secs))
        if ref is None:
            ref = vecs
        else:  # same passages on CPU and GPU: embeddings agree
            diff = float(np.abs(ref[: len(vecs)] - vecs).max())
            print(f"  max |cuda - cpu| embedding difference over {len(vecs)} passages: {diff:.2e}")
    for dev, n, rate in rows:
        print(f"  encode on {dev:4s}: {rate:10.0f} passages/s  ({n} passages, batch {batch})")
    if len(rows) == 2:
        print(f"  GPU / CPU encode speed: {rows[0][2] / rows[1][2]:.1f}x")


def search_speed(n: int, dim: int, nq: int, k: int) -> None:
    import faiss
    import torch

    from rag.indexers.dense import DenseIndex, DenseParams, gpu_searcher

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((2000, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def sample(m: int) -> np.ndarray:  # clustered unit vectors (topics), cosine ~0.7 to their centre
        v = centers[rng.integers(0, len(centers), m)] + rng.standard_normal((m, dim), dtype=np.float32) / dim**0.5
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vecs, q = sample(n), sample(nq)
    ids = np.arange(n, dtype=np.int64)

    flat = DenseIndex(dim)
    secs, _ = timed(flat.add, ids, vecs)
    print(f"  flat: {n} x {dim} added in {secs:.1f} s; faiss threads {faiss.omp_get_max_threads()}")
    os.environ["PILOTFISH_GPU"] = "0"
    cpu_secs, (cpu_ids, _) = timed(flat.search, q, k, repeat=2)
    one_cpu = [timed(flat.search, q[i : i + 1], k)[0] for i in range(20)]
    print(f"  flat CPU (faiss):  {nq / cpu_secs:10.0f} q/s in batches of {nq}; one query p50 "
          f"{np.median(one_cpu) * 1000:.1f} ms")  # fmt: skip
    os.environ["PILOTFISH_GPU"] = "auto"
    flat._gpu = None
    gpu = gpu_searcher(flat.index) if torch.cuda.is_available() else None
    if gpu is not None:
        secs, _ = timed(flat.search, q, k)  # first call copies the index to the GPU
        print(f"  copy to GPU + first batch: {secs:.2f} s ({type(flat._gpu).__name__})")
        gpu_secs, (gpu_ids, _) = timed(flat.search, q, k, repeat=3)
        one_gpu = [timed(flat.search, q[i : i + 1], k)[0] for i in range(20)]
        agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(gpu_ids, cpu_ids, strict=True)])
        print(f"  flat GPU:          {nq / gpu_secs:10.0f} q/s in batches of {nq}; one query p50 "
              f"{np.median(one_gpu) * 1000:.2f} ms; top-{k} agreement with CPU {agree:.4f}")  # fmt: skip
        print(f"  GPU / CPU flat search speed: {cpu_secs / gpu_secs:.1f}x")
    else:
        print("  flat GPU: no CUDA device here")
    ivf = DenseIndex(dim, DenseParams(kind="ivf", nlist=4096, nprobe=16))
    secs, _ = timed(ivf.add, ids, vecs)
    ivf_secs, (ivf_ids, _) = timed(ivf.search, q, k, repeat=2)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ivf_ids, cpu_ids, strict=True)])
    print(f"  ivf CPU (faiss, nlist 4096, nprobe 16): trained+added in {secs:.1f} s; {nq / ivf_secs:10.0f} q/s; "
          f"recall@{k} vs exact {recall:.3f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--passages", type=int, default=20000, help="passages encoded on the GPU")
    ap.add_argument("--cpu-passages", type=int, default=2000, help="passages encoded on the CPU")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--encoder", default="default", help="encoder name or path (default: the shipped MiniLM)")
    args = ap.parse_args()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, GPU {gpu}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"encoding ({args.encoder}):")
    encode_speed(args.encoder, passages(args.passages), args.cpu_passages, args.batch)
    print(f"dense search ({args.n} x {args.dim}, {args.queries} queries, k={args.k}):")
    search_speed(args.n, args.dim, args.queries, args.k)


if __name__ == "__main__":
    main()
