"""Test support code: fakes, helpers and harnesses the test modules share (not tests themselves)."""

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
"""The tiny fixtures: tests/data (docs/, beir/, ...)."""
