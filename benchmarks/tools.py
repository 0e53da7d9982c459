"""Tool retrieval on hand-written tool cards and queries with gold arguments, on two sets sharing the tools:

    dev (benchmarks/data/tool_set.json), labelled "dev, tuned on": the rule filler and the fusion weights were
        tuned on it, so its figures are development figures;
    heldout (benchmarks/data/tool_set_heldout.json), labelled "held-out": 240 queries written independently,
        never used for tuning. Every figure is reported for each set, in a table of its own.

    selection: accuracy@1 / @3 of the gold tool for BM25 only, dense only (MiniLM) and hybrid (RRF): the
        default weights (BM25 0.5, dense 1, rrf_k 10) and plain RRF (1:1, rrf_k 60); and which tools
        ToolRetriever would call with k_tools=3 and the default margin (0.8): the share of queries whose gold
        tool is called, and tools called per query (k_tools=1, the default, calls the acc@1 tool only)
    argument filling (on the gold tool): validity (the share of filled argument dicts passing the schema),
        exact match (the whole dict equals the gold one) and argument accuracy (share of gold arguments
        filled with the gold value), for the rule filler on every query and, on an evenly spaced sample of
        --n-llm queries, for schema-constrained filling with the shipped local LLM (SmolLM2-135M)

    python benchmarks/tools.py                       # every set that exists; --n-llm 0 to skip the LLM
    python benchmarks/tools.py --sets dev            # one set (dev, heldout or both: dev,heldout)
    python benchmarks/tools.py --json                # also write benchmarks/results/tools.json, keyed by set

Nothing is called: the tools have no implementation; selection and filling only. Timings are per query.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rag.retrievers.tool import ToolRetriever, rule_fill
from rag.tools.base import Tool, validate_args

HERE = Path(__file__).resolve().parent
SETS = {
    "dev": (HERE / "data" / "tool_set.json", "dev, tuned on"),
    "heldout": (HERE / "data" / "tool_set_heldout.json", "held-out"),
}
K_CALL = 3  # k_tools for the "called" columns
RESULTS = HERE / "results"


def same(a: Any, b: Any) -> bool:
    """Gold and filled values agree: numbers numerically, strings case- and space-insensitively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) < 1e-9
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.casefold().split()) == " ".join(b.casefold().split())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def score_fill(tool: Tool, filled: dict[str, Any], gold: dict[str, Any]) -> tuple[bool, bool, int]:
    valid = not validate_args(tool.parameters, filled)
    exact = set(filled) == set(gold) and all(same(filled[k], gold[k]) for k in gold)
    return valid, exact, sum(k in filled and same(filled[k], v) for k, v in gold.items())


def fill_run(
    name: str, fill: Callable[[Tool, str], dict[str, Any]], items: list[tuple[Tool, dict[str, Any]]], verbose: bool
) -> dict[str, Any]:
    valid = exact = args_ok = args_all = 0
    ms: list[float] = []
    for tool, q in items:
        t = time.perf_counter()
        filled = fill(tool, q["query"])
        ms.append((time.perf_counter() - t) * 1e3)
        v, e, a = score_fill(tool, filled, q["arguments"])
        valid, exact, args_ok, args_all = valid + v, exact + e, args_ok + a, args_all + len(q["arguments"])
        if verbose and not e:
            print(f"  [{name}] {tool.name}: {q['query']!r}\n      gold {q['arguments']}\n      got  {filled}")
    n = len(items)
    return {
        "n": n,
        "validity": valid / n,
        "exact": exact / n,
        "argument_accuracy": args_ok / max(args_all, 1),
        "ms_p50": float(np.percentile(ms, 50)),
        "ms_mean": float(np.mean(ms)),
    }


class Cached:
    """A generator wrapper remembering replies by prompt, on disk (benchmarks/results/cache/), so that the
    three LLM rows and reruns share the generations they have in common. ``calls`` counts the prompts asked
    for (cached or not) and ``ms`` times the ones actually generated."""

    def __init__(self, gen: Any, path: Path) -> None:
        self.gen, self.path = gen, path
        self.memo: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self.calls = 0
        self.ms: list[float] = []

    def generate(self, prompt: str, max_new_tokens: int | None = None) -> str:
        self.calls += 1
        if prompt not in self.memo:
            t = time.perf_counter()
            self.memo[prompt] = self.gen.generate(prompt, max_new_tokens=max_new_tokens)
            self.ms.append((time.perf_counter() - t) * 1e3)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.memo))
        return str(self.memo[prompt])


def selection(retrievers: dict[str, ToolRetriever], queries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"{'selection':<36} {'acc@1':>7} {'acc@3':>7} {'gold called':>12} {'called/q':>9} {'ms/query':>9}")
    for name, r in retrievers.items():
        at1 = at3 = gold_called = called = 0
        ms: list[float] = []
        for q in queries:
            t = time.perf_counter()
            plan = r.plan(q["query"])  # the top K_CALL tools, those under the margin marked skipped
            ms.append((time.perf_counter() - t) * 1e3)
            top, calls = [c.tool.name for c in plan], [c.tool.name for c in plan if c.skip is None]
            at1 += bool(top) and top[0] == q["tool"]
            at3 += q["tool"] in top
            gold_called += q["tool"] in calls
            called += len(calls)
        n = len(queries)
        row = {"acc@1": at1 / n, "acc@3": at3 / n, f"gold_called@{K_CALL}": gold_called / n}
        row.update({f"called_per_query@{K_CALL}": called / n, "ms_p50": float(np.percentile(ms, 50))})
        out[name] = row
        print(
            f"{name:<36} {row['acc@1']:>7.3f} {row['acc@3']:>7.3f} {gold_called / n:>12.3f} {called / n:>9.2f} "
            f"{row['ms_p50']:>9.2f}"
        )
    return out


def run_set(name: str, args: argparse.Namespace, enc: Any, gen: Cached | None) -> dict[str, Any]:
    """Every figure for one set, printed as that set's table."""
    path, label = SETS[name]
    data = json.loads(path.read_text())
    tools = [Tool(t["name"], t["description"], t["parameters"]) for t in data["tools"]]
    by_name = {t.name: t for t in tools}
    queries = data["queries"]
    out: dict[str, Any] = {"label": label, "data": path.name, "tools": len(tools), "queries": len(queries)}
    if name != "dev" and SETS["dev"][0].exists():
        dev = {q["query"].casefold() for q in json.loads(SETS["dev"][0].read_text())["queries"]}
        out["queries_also_in_dev"] = sum(q["query"].casefold() in dev for q in queries)
    also = f", {out['queries_also_in_dev']} also in dev" if "queries_also_in_dev" in out else ""
    print(f"\n==== {label} ({path.name}: {len(tools)} tools, {len(queries)} queries{also})")

    retrievers = {"bm25": ToolRetriever(tools, encoder=None, k_tools=K_CALL)}
    if enc is not None:
        retrievers["dense"] = ToolRetriever(tools, encoder=enc, weights=(0.0, 1.0), k_tools=K_CALL)
        retrievers["hybrid (default: 0.5:1, k 10)"] = ToolRetriever(tools, encoder=enc, k_tools=K_CALL)
        retrievers["hybrid (RRF 1:1, k 60)"] = ToolRetriever(
            tools, encoder=enc, weights=(1.0, 1.0), rrf_k=60, k_tools=K_CALL
        )
        for r in retrievers.values():
            r.select("warm up")  # card embedding is not a per-query cost
    out["selection"] = selection(retrievers, queries)

    items = [(by_name[q["tool"]], q) for q in queries]
    step = max(1, len(items) // args.n_llm) if args.n_llm > 0 else 0
    sample = items[::step][: args.n_llm] if step else []
    runs: list[tuple[str, Callable[[Tool, str], dict[str, Any]], list[tuple[Tool, dict[str, Any]]]]] = [
        (f"rule filler ({len(items)})", rule_fill, items)
    ]
    if sample and gen is not None:
        runs.append((f"rule filler ({len(sample)})", rule_fill, sample))
        for mode in ("llm", "llm_first", "rules_first"):
            r = ToolRetriever(tools, encoder=None, generator=gen, max_new_tokens=16, llm_mode=mode)
            runs.append((f"LLM, llm_mode={mode} ({len(sample)})", r.fill, sample))
    out["filling"] = {}
    generated = len(gen.ms) if gen else 0
    print(f"{'filling, gold tool':<36} {'valid':>7} {'exact':>7} {'arg acc':>8} {'LLM calls/q':>12}")
    for run_name, fill, subset in runs:
        before = gen.calls if gen else 0
        row = fill_run(run_name, fill, subset, args.verbose)
        row["llm_calls_per_query"] = ((gen.calls - before) / len(subset)) if gen else 0.0
        out["filling"][run_name] = row
        print(
            f"{run_name:<36} {row['validity']:>7.3f} {row['exact']:>7.3f} {row['argument_accuracy']:>8.3f} "
            f"{row['llm_calls_per_query']:>12.2f}"
        )
    new = gen.ms[generated:] if gen else []
    if new:
        out["llm_ms_per_call"] = {"n": len(new), "p50": float(np.percentile(new, 50))}
        print(
            f"LLM generation: {np.percentile(new, 50):.0f} ms per call (p50 of {len(new)} uncached calls; "
            f"max_new_tokens 16, {args.threads} thread(s)); rule filler: {out['filling'][runs[0][0]]['ms_p50']:.2f} "
            "ms per query"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=None, help="comma-separated: dev, heldout (default: those whose file exists)")
    ap.add_argument("--n-llm", type=int, default=40, help="queries per set filled by the local LLM (0: skip)")
    ap.add_argument(
        "--llm", default="local", help="generator spec for LLM filling (rag.models.generate.make_generator)"
    )
    ap.add_argument("--encoder", default="default", help="dense encoder ('none' to skip dense and hybrid)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="print every inexact fill")
    ap.add_argument("--json", action="store_true", help="write benchmarks/results/tools.json")
    args = ap.parse_args()

    names = (
        [s.strip() for s in args.sets.split(",") if s.strip()]
        if args.sets
        else [n for n in SETS if SETS[n][0].exists()]
    )
    unknown = [n for n in names if n not in SETS]
    if unknown or not names:
        ap.error(f"--sets takes {', '.join(SETS)}, comma-separated; got {args.sets!r}")
    missing = [str(SETS[n][0]) for n in names if not SETS[n][0].exists()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    if args.sets is None and len(names) < len(SETS):
        print(
            f"(only {', '.join(names)}: {', '.join(str(p) for n, (p, _) in SETS.items() if n not in names)} is missing)"
        )

    enc = None
    if args.encoder != "none":
        from rag.models.encoders import SentenceTransformerEncoder

        enc = SentenceTransformerEncoder(args.encoder, threads=args.threads)
        enc.encode(["warm up"])  # the model load is not a per-query cost
    cached: Cached | None = None
    if args.n_llm > 0:
        from rag.models.generate import make_generator

        options: dict[str, Any] = {"max_new_tokens": 16}
        if not args.llm.startswith("openai:"):
            options["threads"] = args.threads
        gen = make_generator(args.llm, **options)
        gen.generate("Hello", max_new_tokens=1)  # load the model before timing
        cached = Cached(gen, RESULTS / "cache" / f"tools-llm-{args.llm.replace('/', '_').replace(':', '_')}.json")

    out = {name: run_set(name, args, enc, cached) for name in names}
    if args.json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "tools.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {RESULTS / 'tools.json'}")


if __name__ == "__main__":
    main()
