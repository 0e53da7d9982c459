"""The structure of the code, measured: files per package, the largest modules and longest functions, import
circles, upward imports across the layers, and the trip a question takes through ``RAG.ask``.

    python benchmarks/structure.py                 # this checkout
    python benchmarks/structure.py --before REV    # the same figures for an earlier commit, side by side

``--before REV`` exports that commit into a temporary folder (``git archive``) and measures it with the same
rules; the layer of each module there comes from where it lived (:data:`LAYERS_BEFORE`, the flat layout of
commit 27eed9f, before rag/ was cut into rooms).

Definitions:

* Import graph: every ``import`` of a project module, at module level, inside functions and under
  ``TYPE_CHECKING`` alike (grimp, as import-linter reads it). A *circle* is a set of two or more modules that
  reach each other (a strongly connected component).
* Upward import: an import from a module of a lower layer into a higher one, with the layers of
  ../shared/DESIGN.md: kernel < text < models, tools, datasets, eval < parts (retrievers, indexers,
  connectors) < train, answer < apps (and ``rag/__init__.py``).
* The trip of one question: ``ask`` is run on a small collection (hybrid search, the lexical verifier) with a
  stub LLM (this script), once to warm up and once under ``sys.setprofile``. *Modules passed through*: project
  modules with a function called. The *stage trip*: the modules the orchestration (the pipeline module; after
  the restructuring also ``answer/stages.py``) calls into, in order, merged when consecutive, leaving out the
  helpers every stage uses (kernel, ``rag/text``, the ledger). *Re-entries*: stage modules entered again after
  the trip went elsewhere, plus calls from a stage back into the orchestration.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
from import_tree import build  # noqa: E402

# (module prefix, layer): the longest matching prefix wins. Layers: 0 kernel, 1 text, 2 models/tools/datasets/eval,
# 3 parts, 4 train/answer, 5 apps and the package's front door.
LAYERS = [
    ("rag", 5), ("rag.__main__", 5), ("rag.apps", 5),
    ("rag.types", 0), ("rag.protocols", 0), ("rag.errors", 0), ("rag.checks", 0), ("rag.version", 0),
    ("rag.text", 1),
    ("rag.models", 2), ("rag.tools", 2), ("rag.datasets", 2), ("rag.eval", 2),
    ("rag.retrievers", 3), ("rag.indexers", 3), ("rag.connectors", 3),
    ("rag.train", 4), ("rag.answer", 4),
]  # fmt: skip
LAYERS_BEFORE = [
    ("rag", 5), ("rag.cli", 5), ("rag.cli_ask", 5), ("rag.cli_models", 5), ("rag.cli_serve", 5), ("rag.server", 5),
    ("rag.server_guard", 5), ("rag.server_http", 5), ("rag.server_openai", 5), ("rag.llm_server", 5),
    ("rag.types", 0), ("rag.protocols", 0), ("rag.errors", 0),
    ("rag.injection", 1),
    ("rag.encoders", 2), ("rag.rerank", 2), ("rag.verify", 2), ("rag.decompose", 2), ("rag.decompose_learned", 2),
    ("rag.generate", 2), ("rag.llm_openai", 2), ("rag.models", 2), ("rag.tools", 2), ("rag.tool_schema", 2),
    ("rag.tools_builtin", 2), ("rag.eval", 2), ("rag.eval_qa", 2),
    ("rag.retrievers", 3), ("rag.indexers", 3), ("rag.connectors", 3), ("rag.multihop", 3), ("rag.ray_index", 3),
    ("rag.train", 4), ("rag.rerank_train", 4), ("rag.verify_train", 4), ("rag.pipeline", 4), ("rag.policy", 4),
    ("rag.prompts", 4), ("rag.routing", 4), ("rag.cascade", 4), ("rag.aio", 4),
]  # fmt: skip
# the trip: the orchestration, and the helpers every stage uses (not stages themselves)
ORCHESTRATION = {"rag.answer.pipeline", "rag.answer.stages", "rag.pipeline"}
HELPERS = {"rag.types", "rag.protocols", "rag.errors", "rag.checks", "rag.version", "rag.answer.ledger"}
HELPERS_BEFORE = {"rag.injection", "rag.indexers.tokenize"}  # the text helpers, where they lived before


def layer_of(module: str, layers: list[tuple[str, int]]) -> int:
    best = max((p for p, _ in layers if module == p or module.startswith(p + ".")), key=len)
    return dict(layers)[best]


def sizes(tree: Path) -> dict[str, Any]:
    """Files and lines per package, the largest modules and the longest functions."""
    files: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    modules, functions = [], []
    for f in sorted((tree / "rag").rglob("*.py")):
        rel = f.relative_to(tree).with_suffix("")
        parts = list(rel.parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1])
        text = f.read_text(encoding="utf-8")
        n = len(text.splitlines())
        files[package] += 1
        lines[package] += n
        modules.append((n, module))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{module}.{node.name}"))  # type: ignore[operator]
    modules.sort(reverse=True)
    functions.sort(reverse=True)
    return {
        "packages": {p: {"files": files[p], "lines": lines[p]} for p in sorted(files)},
        "modules": len(modules),
        "lines": sum(lines.values()),
        "largest_module": modules[0],
        "modules_over_300": [m for m in modules if m[0] > 300],
        "longest_function": functions[0],
        "functions_over_60": [f for f in functions if f[0] > 60],
    }


def imports(tree: Path, layers: list[tuple[str, int]]) -> dict[str, Any]:
    """Circles and upward imports of the import graph (in a child process: it imports grimp over ``tree``)."""
    code = f"""
import json, sys
sys.path.insert(0, {str(tree)!r})
import grimp
g = grimp.build_graph("rag", cache_dir=None)
pairs = sorted((a, b) for a in g.modules for b in g.find_modules_directly_imported_by(a))
print(json.dumps(pairs))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree)
    pairs = [tuple(p) for p in json.loads(out.stdout)]
    graph: dict[str, set[str]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    circles = [c for c in _components(graph) if len(c) > 1]
    up = [(a, b) for a, b in pairs if layer_of(a, layers) < layer_of(b, layers)]
    return {
        "modules": len(graph),
        "imports": len(pairs),
        "circles": [sorted(c) for c in circles],
        "modules_in_circles": sum(len(c) for c in circles),
        "upward_imports": up,
    }


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    out.append(comp)
    return out


TRIP = r'''
import json, sys, tempfile
sys.path.insert(0, TREE)
from pathlib import Path
from rag import RAG, Collection, Doc

STUB = "generator (stub LLM)"


class StubLLM:
    """Answers with a fixed reply: one supported claim, and for the repair run one the evidence does not hold."""

    name = STUB

    def __init__(self, reply):
        self.reply = reply

    def generate(self, prompt, max_new_tokens=None):
        return self.reply

    def stream(self, prompt, max_new_tokens=None):
        yield self.reply


def trace(fn, orchestration, helpers):
    seen, trip, callbacks = set(), [], []
    own = __name__

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name == "<module>":
            return
        callee = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if callee == own:
            callee = STUB
        if not (callee.startswith("rag") or callee == STUB) or callee == caller:
            return
        seen.add(callee)
        if callee in helpers or callee.startswith("rag.text."):
            return
        if caller in orchestration and callee not in orchestration:
            if not trip or trip[-1] != callee:
                trip.append(callee)
        elif callee in orchestration and caller.startswith("rag") and caller not in orchestration:
            callbacks.append(f"{caller} -> {callee}")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return sorted(seen), trip, callbacks


docs = [
    Doc("API keys must be rotated every 90 days. Old keys stop working after 24 hours.", id="security.md",
        meta={"title": "Security handbook"}),
    Doc("The cafeteria on the second floor serves lunch from noon to two o'clock.", id="cafeteria.txt"),
    Doc("New employees receive a laptop on their first day.", id="onboarding.html", meta={"title": "Onboarding"}),
]
out = {}
with tempfile.TemporaryDirectory() as tmp:
    kb = Collection.create(Path(tmp) / "kb")
    kb.add(docs)
    kb.close()
    runs = {
        "flag": ("flag", "API keys must be rotated every 90 days [1]."),
        "repair": ("repair", "API keys must be rotated every 90 days [1]. Keys are stored on the moon [2]."),
    }
    for label, (policy, reply) in runs.items():
        rag = RAG.from_collection(Path(tmp) / "kb", llm=StubLLM(reply), verifier="lexical", policy=policy)
        question = "How often must API keys be rotated?"
        rag.ask(question)  # warm up: lazy imports, the encoder, the indexes
        seen, trip, callbacks = trace(lambda: rag.ask(question), ORCHESTRATION, HELPERS)
        counts = {m: trip.count(m) for m in trip}
        out[label] = {
            "modules_passed": len(seen),
            "stage_trip": trip,
            "stage_reentries": sum(n - 1 for n in counts.values()),
            "callbacks": callbacks,
        }
print(json.dumps(out))
'''


def trip(tree: Path, before: bool) -> dict[str, Any]:
    helpers = HELPERS | (HELPERS_BEFORE if before else set())
    code = f"TREE = {str(tree)!r}\nORCHESTRATION = {sorted(ORCHESTRATION)!r}\nHELPERS = {sorted(helpers)!r}\n" + TRIP
    env = {"HF_HUB_OFFLINE": "1", "PILOTFISH_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(repo: Path, before: bool) -> dict[str, Any]:
    tree = build(Path(tempfile.mkdtemp(prefix="rag-structure-")) / "tree", repo)
    layers = LAYERS_BEFORE if before else LAYERS
    return {"sizes": sizes(tree), "imports": imports(tree, layers), "trip": trip(tree, before)}


def export(rev: str) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="rag-before-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def report(name: str, m: dict[str, Any]) -> None:
    s, i, t = m["sizes"], m["imports"], m["trip"]
    print(f"== {name}")
    print(f"  {s['modules']} modules, {s['lines']} lines; files per package:")
    for p, v in s["packages"].items():
        print(f"    {p:<24} {v['files']:>3} files {v['lines']:>6} lines")
    print(f"  largest module: {s['largest_module'][1]} ({s['largest_module'][0]} lines); over 300 lines: "
          f"{len(s['modules_over_300'])} {[m for _, m in s['modules_over_300']]}")  # fmt: skip
    print(f"  longest function: {s['longest_function'][1]} ({s['longest_function'][0]} lines); over 60 lines: "
          f"{len(s['functions_over_60'])} {[f'{f} ({n})' for n, f in s['functions_over_60']]}")  # fmt: skip
    print(f"  import graph: {i['modules']} modules, {i['imports']} imports; circles: {len(i['circles'])} "
          f"({i['modules_in_circles']} modules)")  # fmt: skip
    for c in i["circles"]:
        print(f"    {{{', '.join(c)}}}")
    print(f"  upward imports: {len(i['upward_imports'])}")
    for a, b in i["upward_imports"]:
        print(f"    {a} -> {b}")
    for label, r in t.items():
        print(f"  ask ({label}): {r['modules_passed']} modules passed through; stage trip "
              f"({len(r['stage_trip'])} entries, {r['stage_reentries']} re-entries, {len(r['callbacks'])} calls back "
              f"into the orchestration):")  # fmt: skip
        print(f"    {' -> '.join(r['stage_trip'])}")
        for c in sorted(set(r["callbacks"])):
            print(f"    call back: {c} (x{r['callbacks'].count(c)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="REV", help="also measure this commit (e.g. 27eed9f)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    if args.before:
        results[f"before ({args.before})"] = measure(export(args.before), before=True)
    results["now"] = measure(ROOT, before=False)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, m in results.items():
        report(name, m)


if __name__ == "__main__":
    main()
