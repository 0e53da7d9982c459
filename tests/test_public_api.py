"""The public names and module paths users import keep working across restructurings."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import rag

# `rag.__all__` of 0.1.0 before rag/ was cut into rooms (commit 27eed9f): every name must still import from `rag`
PUBLIC_0_1 = [
    "RAG", "Answer", "BM25Index", "BM25Params", "BM25Retriever", "Cascade", "Chunker", "Claim", "Collection",
    "CollectionLockedError", "ConfigError", "CrossEncoderReranker", "DenseIndex", "DenseParams", "DenseRetriever",
    "DirectoryCollection", "Doc", "DocumentNotFoundError", "Extractive", "GenerationError", "Hit", "Hybrid",
    "IndexFormatError", "IndexResult", "LLMServer", "LearnedDecomposer", "LocalGenerator", "MissingDependencyError",
    "MultiHopRetriever", "NLIVerifier", "OpenAIGenerator", "PgCollection", "PromptedDecomposer", "QueryError",
    "RagError", "Reranked", "RuleDecomposer", "SentenceTransformerEncoder", "SourceError", "StoreUnavailableError",
    "SubQuery", "TableRetriever", "Tokenizer", "Tool", "ToolRetriever", "UnsafeQueryError", "add_tables", "fuse",
    "http_tool", "load_path", "tool",
]  # fmt: skip

# module paths the README of 0.1.0 showed, and what they moved to (deprecated aliases, removed in 0.3)
MOVED = {
    "rag.cascade": ("rag.answer.cascade", ["Cascade", "Extractive"]),
    "rag.multihop": ("rag.retrievers.multihop", ["MultiHopRetriever"]),
    "rag.rerank": ("rag.models.rerank", ["CrossEncoderReranker", "Reranked"]),
    "rag.server": ("rag.apps.server.app", ["create_app"]),
    "rag.tools_builtin": ("rag.tools.builtin", ["BUILTIN_TOOLS"]),
    "rag.verify": ("rag.models.verify", ["NLIVerifier"]),
}


@pytest.mark.parametrize("name", PUBLIC_0_1)
def test_every_public_name_of_0_1_imports_from_rag(name: str) -> None:
    assert name in rag.__all__
    assert getattr(rag, name) is not None


def test_the_version_is_written_once() -> None:
    from importlib.metadata import version

    from rag.version import __version__

    assert rag.__version__ == __version__ == version("pilotfish")


@pytest.mark.parametrize("old", sorted(MOVED))
def test_module_paths_the_readme_showed_still_import_with_a_warning(old: str) -> None:
    new, names = MOVED[old]
    code = (
        "import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as e:\n    print('warned:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"warned: {old} moved to {new}" in out.stdout, out.stderr
    with pytest.warns(DeprecationWarning):
        alias = importlib.reload(importlib.import_module(old))
    target = importlib.import_module(new)
    for n in names:
        assert getattr(alias, n) is getattr(target, n)


def test_every_package_is_in_the_distribution() -> None:
    """A package missing from pyproject.toml's list works in an editable install and is absent from the wheel."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for package, folder in config["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(config["packages"])
