"""Lay the import package ``rag`` out as it is installed, for tools that read a package from its folder.

pyproject.toml maps ``rag.retrievers``, ``rag.indexers`` and ``rag.connectors`` onto the top-level folders
retrievers/, indexers/ and connectors/ (setuptools ``package-dir``). Tools that walk a package's folder, such
as import-linter (through grimp), see only rag/ in the working tree. This copies the Python files into
``DEST/rag/...`` in the installed layout and prints DEST; put DEST first on ``PYTHONPATH`` to analyse it.

    python .ci/import_tree.py build/import-tree [REPOSITORY]
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(dest: Path, root: Path = ROOT) -> Path:
    """Copy the ``.py`` files of the repository at ``root`` into ``dest`` in the installed layout."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    if dest.exists():
        shutil.rmtree(dest)
    for package, folder in sorted(mapping.items()):
        target = dest.joinpath(*package.split("."))
        for src in (root / folder).rglob("*.py"):
            rel = src.relative_to(root / folder)
            if "__pycache__" not in rel.parts:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target / rel)
    return dest


if __name__ == "__main__":
    args = sys.argv[1:]
    dest = Path(args[0]).resolve() if args else ROOT / "build" / "import-tree"
    print(build(dest, Path(args[1]).resolve() if len(args) > 1 else ROOT))
