"""``rag serve`` under a bounded load from a second process: benchmarks/load.py against the server's process.

CI runs a short load (20 clients for 8 s); ``PILOTFISH_LOAD_CLIENTS=50 PILOTFISH_LOAD_SECONDS=60`` runs the long
variant recorded in benchmarks/README.md. Asserted: no errors (every answer 2xx, no exception or timeout), a sane
number of requests, every route served, and the server's memory stable (growth of its anonymous memory from the
middle to the end of the run); latency and throughput are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import httpx

from benchmarks import load

CLIENTS = int(os.environ.get("PILOTFISH_LOAD_CLIENTS", "20"))
SECONDS = float(os.environ.get("PILOTFISH_LOAD_SECONDS", "8"))
TOKEN = "s3cret"
MIX = "search=70,ask=10,health=10,document=10"


def test_server_under_load_answers_everything_with_stable_memory(tmp_path: Path) -> None:
    kb, _ = load.build("tests", tmp_path)
    figures = tmp_path / "figures.json"
    with load.server_process(kb, token=TOKEN) as (url, pid):
        cmd = [sys.executable, load.__file__, "--url", url, "--clients", str(CLIENTS), "--seconds", str(SECONDS),
               "--mix", MIX, "--token", TOKEN, "--server-pid", str(pid), "--json-out", str(figures)]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 120)
        print(run.stdout)
        assert run.returncode == 0, run.stderr[-3000:]
        assert httpx.post(f"{url}/search", json={"query": "keys"}).status_code == 401  # the load carried the token
        fig = json.loads(figures.read_text())
    assert fig["errors"] == 0, (fig["error_kinds"], run.stderr[-3000:])
    assert fig["requests"] >= 10 * SECONDS, fig  # at least 10 requests/s: the server kept answering
    assert all(r["requests"] > 0 for r in fig["routes"].values()), fig["routes"]
    heap = fig["server"]["anon_mb"]  # the server's anonymous memory (RSS less mapped files)
    assert fig["server"]["anon_growth_mb"]["mid_to_end"] < 50, heap  # MB; steady after the first half's warm-up
    assert heap["peak"] < heap["start"] + 300, heap
