"""Kill -9 a writer at random moments, many times, and check the collection after every kill.

    python -m tests.support.crash_harness DIR --trials 200 --seed 0      # prints a JSON summary; exit 1 on a failure

Each trial forks a writer that runs a random sequence of operations on the collection at ``DIR`` (add, update,
delete, rebuild, and saving a trained model into it, the last step of ``rag train``) and reports each operation
when it returns; the parent kills it with SIGKILL after a random delay. A verifier (forked too, so the parent
never holds the collection open) then opens the collection read-only, runs :meth:`Collection.check` (every
checksum, every store block, index sizes), and compares every stored document, a BM25 and a dense search, and
the model with the harness's record of committed operations. A kill can land between an operation's commit and
its report, so the collection must hold the state after the last reported operation or after the next one:
nothing else (no half-applied operation, no lost commit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
MODEL = ("reranker", "crash-test")


class HashEncoder:
    """A deterministic bag-of-words encoder (no model to load), so the dense payload is written on every commit."""

    name, dim = "hash-encoder-64", 64

    def encode(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@dataclass
class State:
    docs: dict[str, str] = field(default_factory=dict)
    model: int = 0  # version of the model saved into the collection (0: none)


def plan(rng: random.Random, state: State, trial: int) -> tuple[list[tuple[str, Any]], list[State]]:
    """A random sequence of operations and the state after each (states[0] is the state before)."""
    ops: list[tuple[str, Any]] = []
    states = [state]
    for j in range(rng.randint(3, 8)):
        s = State(dict(states[-1].docs), states[-1].model)
        kind = rng.choices(["add", "update", "delete", "rebuild", "train"], [5, 2, 2, 1, 1])[0]
        if kind in ("update", "delete") and not s.docs:
            kind = "add"
        if kind == "add":
            new = {f"t{trial}o{j}d{i}": text(rng, f"t{trial}o{j}d{i}") for i in range(rng.randint(1, 40))}
            s.docs.update(new)
            ops.append(("add", new))
        elif kind == "update":
            changed = {i: text(rng, f"{i}v{trial}x{j}") for i in rng.sample(sorted(s.docs), min(5, len(s.docs)))}
            s.docs.update(changed)
            ops.append(("update", changed))
        elif kind == "delete":
            gone = rng.sample(sorted(s.docs), min(rng.randint(1, 5), len(s.docs)))
            for i in gone:
                del s.docs[i]
            ops.append(("delete", gone))
        elif kind == "rebuild":
            ops.append(("rebuild", None))
        else:
            s.model += 1
            ops.append(("train", s.model))
        states.append(s)
    return ops, states


def text(rng: random.Random, marker: str) -> str:
    return f"{' '.join(rng.choices(WORDS, k=rng.randint(5, 60)))} marker{marker.lower()}"


def save_model(kb_path: Path, version: int) -> None:
    """What ``rag train`` does last: write the model files and its manifest, then rename them into place."""
    from rag.models.registry import model_dir, write_model_manifest, writing_model

    with writing_model(model_dir(*MODEL, collection=kb_path), force=True) as tmp:
        (tmp / "weights.bin").write_bytes(os.urandom(256 * 1024))
        write_model_manifest(tmp, MODEL[0], MODEL[1], "none", training={"version": version})


def writer(path: Path, ops: list[tuple[str, Any]], report: int) -> None:
    from rag import Collection, Doc

    kb = Collection.open(path, encoder=HashEncoder())
    os.write(report, b"r")  # ready: the kill delay starts now
    for n, (kind, arg) in enumerate(ops):
        if kind == "add":
            kb.add([Doc(t, id=i) for i, t in arg.items()])
        elif kind == "update":
            kb.update([Doc(t, id=i) for i, t in arg.items()])
        elif kind == "delete":
            kb.delete(arg)
        elif kind == "rebuild":
            kb.rebuild()
        else:
            save_model(path, arg)
        os.write(report, bytes([n]))
    time.sleep(3600)  # done: wait for the kill


def observe(path: Path) -> tuple[State, list[str]]:
    """The collection as a reader sees it, and what is inconsistent in it."""
    from rag import Collection
    from rag.models.registry import resolve_model

    kb = Collection.open(path, encoder=HashEncoder(), read_only=True)
    try:
        problems = kb.check()
        ids = kb.ids()
        docs = {d.id: d.text for d in kb.get(ids)}
        for i in random.Random(len(ids)).sample(ids, min(3, len(ids))):
            marker = docs[i].rsplit(" ", 1)[-1]
            for mode in ("bm25", "dense"):
                if i not in {h.doc.id for h in kb.search(docs[i] if mode == "dense" else marker, mode=mode, k=5)}:
                    problems.append(f"{mode} search does not find {i}")
    finally:
        kb.close()
    try:
        _, manifest = resolve_model(MODEL[1], MODEL[0], collection=path)
        model = int(manifest["training"]["version"]) if manifest else 0
    except Exception as e:  # a damaged model counts as a problem
        problems.append(f"model: {e}")
        model = -1
    return State(docs, model), problems


def in_child(fn: Any, *args: Any) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
            os._exit(0)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(70)
    return pid


def verify(path: Path, candidates: list[State], out: int) -> None:
    seen, problems = observe(path)
    match = [n for n, s in enumerate(candidates) if s.docs == seen.docs and s.model == seen.model]
    if not match and not problems:
        problems.append(f"state matches no committed state: {len(seen.docs)} documents, model {seen.model}")
    os.write(out, json.dumps({"match": match[-1] if match else None, "problems": problems}).encode())


def run(path: Path, trials: int, seed: int, max_delay: float) -> dict[str, Any]:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"  # GNU OpenMP's threads do not survive fork()
    import duckdb  # noqa: F401  (imported once here, so the forked writers and verifiers start at once)
    import faiss  # noqa: F401

    import rag.indexers.directory.collection
    import rag.models.registry  # noqa: F401
    from rag import Collection
    from rag.retrievers.bm25_index import BM25Index

    warm = BM25Index()  # compile the BM25 kernels once, here, not in every child
    warm.add(np.arange(2), ["warm up", "the kernels"])
    warm.delete(np.arange(1))
    warm.search(["warm"], k=1)

    if not path.exists():
        Collection.create(path, encoder=HashEncoder(), chunk_size=0).close()
    rng = random.Random(seed)
    state, failures = State(), []
    tally: dict[str, Any] = {"trials": 0, "ops_committed": 0, "killed_mid_op": 0, "in_flight_op_visible": 0}
    killed_during: dict[str, int] = {}
    start = time.perf_counter()
    for trial in range(trials):
        ops, states = plan(rng, state, trial)
        r, w = os.pipe()
        pid = in_child(writer, path, ops, w)
        os.close(w)
        ready = os.read(r, 1)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        writer_status = os.waitpid(pid, 0)[1]
        acked = len(os.read(r, 64)) if ready else 0
        os.close(r)
        if not os.WIFSIGNALED(writer_status):  # it raised (traceback on stderr) instead of being killed
            failures.append({"trial": trial, "ops": [k for k, _ in ops], "acked": acked, "writer_failed": True})
            break
        r, w = os.pipe()
        vpid = in_child(verify, path, states[acked : acked + 2], w)
        os.close(w)
        verdict = json.loads(os.read(r, 1 << 20).decode() or '{"match": null, "problems": ["verifier crashed"]}')
        os.close(r)
        os.waitpid(vpid, 0)
        tally["trials"] += 1
        tally["ops_committed"] += acked
        if acked < len(ops):
            tally["killed_mid_op"] += 1
            killed_during[ops[acked][0]] = killed_during.get(ops[acked][0], 0) + 1
        if verdict["problems"] or verdict["match"] is None:
            failures.append({"trial": trial, "ops": [k for k, _ in ops], "acked": acked, **verdict})
            break  # later trials would start from an unknown state
        tally["in_flight_op_visible"] += verdict["match"]
        state = states[acked + verdict["match"]]
    tally.update(killed_during=killed_during, documents=len(state.docs), model_version=state.model)
    tally.update(seconds=round(time.perf_counter() - start, 1), failures=failures)
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="collection directory (created when missing)")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=0.4, help="kill uniform(0, this) seconds into the operations")
    args = ap.parse_args()
    summary = run(args.path, args.trials, args.seed, args.max_delay)
    print(json.dumps(summary))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
