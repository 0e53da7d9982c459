"""A bounded load test of ``rag serve``: many concurrent clients from a second process on 127.0.0.1.

Three modes, one file:

* load (``--url``): N clients (asyncio + httpx, one keep-alive connection each) fire a mix of requests for S
  seconds — mostly ``POST /search``, some ``POST /ask``, ``GET /health`` and ``GET /documents/{id}`` — and print
  requests, throughput, p50/p95/p99 latency per route, errors (any non-2xx or exception) and, with
  ``--server-pid``, the server's RSS, threads and open files from /proc at the start, middle and end of the run
  and after the clients hung up;
* serve (``--serve DIR``): the server under test — the app and uvicorn settings of ``rag serve`` with its default
  pipeline, except the LLM: :class:`QuoteLLM` answers at once with the top passage's first sentence, so ``/ask``
  measures the server and the pipeline around the LLM (retrieval, prompt, verification), not a 135M model on a
  CPU (SmolLM2 takes seconds per answer here; 50 clients would measure only its queue);
* demo (``--demo``): builds a collection (``--data tests``: tests/data/docs; ``--data scifact``: SciFact's 5,183
  abstracts and its queries, read from ../shared/data; BM25, or with MiniLM embeddings for ``--mode
  dense|hybrid``), starts the server process, runs the load process against it and prints the figures — one
  command reproduces the benchmark:

    python benchmarks/load.py --demo --data scifact --clients 50 --seconds 60

Figures are printed (``--json-out FILE`` writes them as JSON), never asserted; tests/test_server_load.py asserts
behaviour (no errors, memory stable) on a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
DEFAULT_MIX = {"search": 80, "ask": 5, "health": 10, "document": 5}
QUERIES = ["How often must API keys be rotated?", "password length", "cafeteria opening hours", "holiday policy",
           "onboarding laptop", "vacation days", "who to call for a lost badge", "rotate keys admin console",
           "lunch menu", "frequently asked questions", "security handbook", "new employee first day"]  # fmt: skip


class QuoteLLM:
    """A generator that answers at once with the first sentence of evidence passage [1], cited."""

    name = "quote"

    def generate(self, prompt: Any, max_new_tokens: int | None = None) -> str:
        text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
        start = text.find("[1] ")
        if start < 0:
            return "I don't know based on the evidence."
        passage = text[start + 4 :].split("\n", 1)[0]
        passage = passage.split(") ", 1)[1] if passage.startswith("(") and ") " in passage else passage
        return passage.split(". ", 1)[0].strip().rstrip(".") + ". [1]"

    def stream(self, prompt: Any, max_new_tokens: int | None = None) -> Iterator[str]:
        yield self.generate(prompt)


# ---------------------------------------------------------------- load (the client process)
def proc_sample(pid: int) -> dict[str, float]:
    """The server's resident memory (MB): all of it, and its anonymous part (the heap: what a leak grows; mapped
    files such as shared libraries count in RSS but the kernel may drop them), threads and open files."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "anon_mb": round(int(fields["RssAnon"].split()[0]) / 1024, 1),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1) if xs else 0.0


def read_queries(path: str | None) -> list[str]:
    if not path:
        return QUERIES
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["text"] if path.endswith(".jsonl") else x for x in lines if x.strip()]


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """Each client its own connection (kept alive), sending its next request as soon as an answer is in."""
    import httpx

    mix = parse_mix(args.mix)
    queries = read_queries(args.queries)
    options: dict[str, Any] = {"base_url": args.url, "timeout": args.timeout,
                               "headers": {"Authorization": f"Bearer {args.token}"} if args.token else {}}  # fmt: skip
    lat: dict[str, list[float]] = {r: [] for r in mix}
    errs: dict[str, int] = {r: 0 for r in mix}
    kinds: dict[str, int] = {}
    samples: list[tuple[float, dict[str, float]]] = []
    async with httpx.AsyncClient(**options) as c:
        r = await c.get("/documents", params={"limit": 1000})
        r.raise_for_status()
        ids = r.json()["ids"]

    def request(route: str, rng: random.Random) -> tuple[str, str, Any]:
        q = rng.choice(queries)
        if route == "search":
            return "POST", "/search", {"query": q, "k": 10}
        if route == "ask":
            return "POST", "/ask", {"question": q}
        if route == "document":
            return "GET", "/documents/" + quote(rng.choice(ids), safe="/"), None
        return "GET", "/health", None

    async def client(i: int) -> None:
        rng = random.Random(i)
        routes, weights = list(mix), list(mix.values())
        async with httpx.AsyncClient(**options, limits=httpx.Limits(max_connections=1)) as c:
            while time.monotonic() < stop:
                route = rng.choices(routes, weights)[0]
                method, path, body = request(route, rng)
                t = time.perf_counter()
                try:
                    resp = await c.request(method, path, json=body)
                    kind = "" if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
                    detail = resp.text[:200]
                except Exception as e:  # a refused or reset connection, a timeout: an error like any non-2xx
                    kind, detail = type(e).__name__, f"{e!r} after {time.perf_counter() - t:.3f} s"
                lat[route].append(time.perf_counter() - t)
                if kind:
                    errs[route] += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if sum(kinds.values()) <= 20:
                        print(f"{route} at {time.monotonic() - t0:.1f} s: {kind} {detail}", file=sys.stderr)

    async def sampler() -> None:
        while True:
            samples.append((time.monotonic() - t0, proc_sample(args.server_pid)))
            await asyncio.sleep(0.5)

    t0 = time.monotonic()
    stop = t0 + args.seconds
    watch = asyncio.create_task(sampler()) if args.server_pid else None
    await asyncio.gather(*(client(i) for i in range(args.clients)))
    wall = time.monotonic() - t0
    if watch is not None:
        watch.cancel()
        await asyncio.sleep(0.5)  # the clients have hung up: what the server holds now is what it keeps
        samples.append((wall, proc_sample(args.server_pid)))
    n = sum(len(v) for v in lat.values())
    out: dict[str, Any] = {
        "url": args.url,
        "clients": args.clients,
        "seconds": args.seconds,
        "mix": mix,
        "requests": n,
        "errors": sum(errs.values()),
        "error_rate": round(sum(errs.values()) / max(n, 1), 6),
        "error_kinds": kinds,
        "throughput_rps": round(n / wall, 1),
        "routes": {r: route_figures(v, errs[r], wall) for r, v in lat.items()},
        "load_average": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if samples:
        mid = min(samples, key=lambda s: abs(s[0] - wall / 2))[1]
        points = {"start": samples[0][1], "mid": mid, "end": samples[-2][1], "after": samples[-1][1]}
        out["server"] = {k: {p: s[k] for p, s in points.items()} for k in ("rss_mb", "anon_mb", "threads", "fds")}
        for k in ("rss_mb", "anon_mb"):
            m = out["server"][k]
            m["peak"] = max(s[k] for _, s in samples)
            out["server"][k.replace("_mb", "_growth_mb")] = {"start_to_end": round(m["end"] - m["start"], 1),
                                                             "mid_to_end": round(m["end"] - m["mid"], 1)}  # fmt: skip
    return out


def route_figures(latencies: list[float], errors: int, wall: float) -> dict[str, Any]:
    v = latencies
    return {"requests": len(v), "errors": errors, "rps": round(len(v) / wall, 1), "p50_ms": pct(v, 0.5),
            "p95_ms": pct(v, 0.95), "p99_ms": pct(v, 0.99), "max_ms": pct(v, 1.0)}  # fmt: skip


def parse_mix(spec: str) -> dict[str, int]:
    """``search=80,ask=5`` (weights) or ``search,ask`` (equal weights)."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        if name not in DEFAULT_MIX:
            raise SystemExit(f"unknown route {name!r} in --mix; use {', '.join(DEFAULT_MIX)}")
        mix[name] = int(weight or 1)
    return mix


def report(fig: dict[str, Any]) -> str:
    errors = f"errors {fig['errors']} (rate {fig['error_rate']:.4%}) {fig['error_kinds']}"
    lines = [f"{fig['clients']} clients for {fig['seconds']:g} s against {fig['url']}: {fig['requests']} requests, "
             f"{fig['throughput_rps']} req/s, {errors}"]  # fmt: skip
    for r, s in fig["routes"].items():
        lines.append(f"  {r:<9} {s['requests']:>7} req {s['rps']:>8} req/s  p50 {s['p50_ms']:>7} ms  "
                     f"p95 {s['p95_ms']:>7} ms  p99 {s['p99_ms']:>7} ms  errors {s['errors']}")  # fmt: skip
    if "server" in fig:
        for k, v in fig["server"].items():
            lines.append(f"  server {k}: " + ", ".join(f"{p} {x}" for p, x in v.items()))
    lines.append(f"  load average {fig['load_average']} on {fig['cpus']} CPUs")
    return "\n".join(lines)


# ---------------------------------------------------------------- serve (the server process) and demo
def serve(args: argparse.Namespace) -> None:
    """``rag serve``'s app, pipeline and uvicorn settings over ``args.serve``, with :class:`QuoteLLM`."""
    from rag.apps.cli.common import add_pipeline_args, pipeline_options
    from rag.apps.server.app import create_app
    from rag.apps.server.http import run, server_config

    p = argparse.ArgumentParser()
    add_pipeline_args(p)
    options = {**pipeline_options(p.parse_args(["--mode", args.mode])), "llm": QuoteLLM()}
    app = create_app({"kb": args.serve}, token=args.token, **options)
    for served in app.state.served.values():
        served.warm()
    config = server_config(app, "127.0.0.1", args.port, request_timeout=args.request_timeout,
                           timeout_graceful_shutdown=5)  # fmt: skip
    print(f"serving {args.serve} at http://127.0.0.1:{args.port}", flush=True)
    run(config)


@contextlib.contextmanager
def server_process(collection: Path, *extra: str, token: str | None = None) -> Iterator[tuple[str, int]]:
    """``python benchmarks/load.py --serve COLLECTION`` on a free port; yields (URL, pid); stopped with SIGINT."""
    from rag.testing.live import free_port
    from rag.testing.live import server_process as start

    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(collection), "--port", str(port), *extra]
    cmd += ["--token", token] if token else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    served = None
    try:
        with start(cmd, port, start_timeout=120, env=env) as served:
            yield served.url, served.proc.pid
    finally:
        if served is not None and served.proc.returncode != 0:
            print(f"server exited with {served.proc.returncode}:\n{served.output}", file=sys.stderr)


def build(data: str, where: Path, mode: str = "bm25") -> tuple[Path, str | None]:
    """A collection under ``where`` and a queries file (None: the built-in queries for tests/data/docs)."""
    from rag.indexers.collection import Collection

    kb = Collection.create(where / "kb", encoder=None if mode == "bm25" else "default")
    if data == "scifact":
        from rag.datasets import load_beir

        bench = load_beir(SCIFACT, "test")
        kb.add(bench.corpus)
        queries: str | None = str(where / "queries.txt")
        Path(queries).write_text("\n".join(bench.queries.values()), encoding="utf-8")
    else:
        from rag.connectors.files import load_path

        kb.add(load_path(ROOT / "tests" / "data" / "docs").docs)
        queries = None
    kb.close()
    return where / "kb", queries


def demo(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pilotfish-load-"))
    token = args.token or "load-test-token"
    try:
        kb, queries = build(args.data, tmp, args.mode)
        with server_process(kb, "--mode", args.mode, token=token) as (url, pid):
            out = tmp / "figures.json"
            cmd = [sys.executable, __file__, "--url", url, "--clients", str(args.clients), "--seconds",
                   str(args.seconds), "--mix", args.mix, "--token", token, "--server-pid", str(pid),
                   "--json-out", str(out)] + (["--queries", queries] if queries else [])  # fmt: skip
            subprocess.run(cmd, check=True)
            return dict(json.loads(out.read_text()))
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="load mode: the server to load, e.g. http://127.0.0.1:8000")
    ap.add_argument("--serve", metavar="DIR", help="serve mode: serve this collection (with --port)")
    ap.add_argument("--demo", action="store_true", help="build a collection, start a server, load it")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--mix", default=",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()))
    ap.add_argument("--token", help="bearer token (demo: one is made up and required)")
    ap.add_argument("--queries", help="queries, one a line (.txt) or BEIR queries.jsonl (default: built-in)")
    ap.add_argument("--server-pid", type=int, help="sample this process's RSS, threads and files from /proc")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request before it counts as an error")
    ap.add_argument("--json-out", help="also write the figures to this file as JSON")
    ap.add_argument("--data", default="tests", choices=["tests", "scifact"], help="demo: the collection")
    ap.add_argument("--mode", default="bm25", choices=["bm25", "dense", "hybrid"], help="serve, demo: retrieval")
    ap.add_argument("--port", type=int, default=8000, help="serve: port on 127.0.0.1")
    ap.add_argument("--request-timeout", type=float, default=30.0, help="serve: rag serve --request-timeout")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args)
        return
    if not args.demo and not args.url:
        ap.error("give --url (load a server), --serve DIR or --demo")
    if args.demo:
        fig = demo(args)  # the load process printed the figures
    else:
        fig = asyncio.run(run_load(args))
        print(report(fig), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(fig, indent=2), encoding="utf-8")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
