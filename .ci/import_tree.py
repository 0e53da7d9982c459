"""Lay the import package ``rag`` out as it is installed, for tools that read it from a folder.

pyproject.toml maps ``rag.retrievers``, ``rag.indexers`` and ``rag.connectors`` onto the top-level folders
retrievers/, indexers/ and connectors/ (setuptools ``package-dir``). Tools that walk a package's folder, such
as import-linter (through grimp), see only rag/ in the working tree. This script copies the Python files into
``DEST/rag/...`` in the installed layout and prints DEST; put DEST first on ``PYTHONPATH`` to analyse it.

    python .ci/import_tree.py build/import-tree
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(dest: Path) -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    if dest.exists():
        shutil.rmtree(dest)
    for package, folder in sorted(mapping.items()):  # "rag" first, then the folders mapped inside it
        target = dest.joinpath(*package.split("."))
        for src in (ROOT / folder).rglob("*.py"):
            rel = src.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest


if __name__ == "__main__":
    print(build(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "build" / "import-tree"))
