"""Run the real ``rag`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

KEYS_Q = "How often must API keys be rotated?"
"""The question the tests ask of tests/data/docs (answered by security.md)."""


def rag(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PILOTFISH_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and p.returncode not in (0,):
        raise AssertionError(f"rag {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
