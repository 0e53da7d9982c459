"""pilotfish: small models ahead of a frozen LLM.

``import rag`` is light: heavy parts (DuckDB, FAISS, torch) load on first use.

Example:
    >>> from rag import Collection, Doc                              # doctest: +SKIP
    >>> kb = Collection.create("kb")                                 # doctest: +SKIP
    >>> kb.add([Doc("Rotate the keys every 90 days.", id="keys")])   # doctest: +SKIP
    >>> kb.search("how often do keys rotate?", k=1)[0].doc.id        # doctest: +SKIP
    'keys'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.errors import (
    CollectionLockedError,
    ConfigError,
    DocumentNotFoundError,
    GenerationError,
    IndexFormatError,
    MissingDependencyError,
    QueryError,
    RagError,
    SourceError,
    StoreUnavailableError,
    UnsafeQueryError,
)
from rag.types import Answer, Claim, Doc, Hit, SubQuery

__version__ = "0.1.0"

_LAZY = {
    "Collection": "rag.indexers.collection",
    "DirectoryCollection": "rag.indexers.directory",
    "PgCollection": "rag.connectors.pg_store",
    "IndexResult": "rag.indexers.writes",
    "BM25Index": "rag.indexers.bm25_index",
    "BM25Params": "rag.indexers.bm25_index",
    "Tokenizer": "rag.indexers.tokenize",
    "Chunker": "rag.indexers.chunking",
    "DenseIndex": "rag.indexers.dense_index",
    "DenseParams": "rag.indexers.dense_index",
    "BM25Retriever": "rag.retrievers.bm25",
    "DenseRetriever": "rag.retrievers.dense",
    "Hybrid": "rag.retrievers.hybrid",
    "fuse": "rag.retrievers.hybrid",
    "SentenceTransformerEncoder": "rag.encoders",
    "load_path": "rag.connectors.files",
    "CrossEncoderReranker": "rag.rerank",
    "Reranked": "rag.rerank",
    "NLIVerifier": "rag.verify",
    "RuleDecomposer": "rag.decompose",
    "PromptedDecomposer": "rag.decompose",
    "LearnedDecomposer": "rag.decompose_learned",
    "MultiHopRetriever": "rag.multihop",
    "LocalGenerator": "rag.generate",
    "OpenAIGenerator": "rag.llm_openai",
    "LLMServer": "rag.llm_server",
    "RAG": "rag.pipeline",
    "Cascade": "rag.cascade",
    "Extractive": "rag.cascade",
    "add_tables": "rag.indexers.tables",
    "TableRetriever": "rag.retrievers.table",
    "ToolRetriever": "rag.retrievers.tool",
    "Tool": "rag.tools",
    "tool": "rag.tools",
    "http_tool": "rag.tools",
}

__all__ = [
    "RAG",
    "Answer",
    "BM25Index",
    "BM25Params",
    "BM25Retriever",
    "Cascade",
    "Chunker",
    "Claim",
    "Collection",
    "CollectionLockedError",
    "ConfigError",
    "CrossEncoderReranker",
    "DenseIndex",
    "DenseParams",
    "DenseRetriever",
    "DirectoryCollection",
    "Doc",
    "DocumentNotFoundError",
    "Extractive",
    "GenerationError",
    "Hit",
    "Hybrid",
    "IndexFormatError",
    "IndexResult",
    "LLMServer",
    "LearnedDecomposer",
    "LocalGenerator",
    "MissingDependencyError",
    "MultiHopRetriever",
    "NLIVerifier",
    "OpenAIGenerator",
    "PgCollection",
    "PromptedDecomposer",
    "QueryError",
    "RagError",
    "Reranked",
    "RuleDecomposer",
    "SentenceTransformerEncoder",
    "SourceError",
    "StoreUnavailableError",
    "SubQuery",
    "TableRetriever",
    "Tokenizer",
    "Tool",
    "ToolRetriever",
    "UnsafeQueryError",
    "add_tables",
    "fuse",
    "http_tool",
    "load_path",
    "tool",
]

if TYPE_CHECKING:
    from rag.cascade import Cascade, Extractive
    from rag.connectors.files import load_path
    from rag.decompose import PromptedDecomposer, RuleDecomposer
    from rag.decompose_learned import LearnedDecomposer
    from rag.encoders import SentenceTransformerEncoder
    from rag.generate import LocalGenerator
    from rag.indexers.bm25_index import BM25Index, BM25Params
    from rag.indexers.chunking import Chunker
    from rag.indexers.collection import Collection
    from rag.indexers.dense_index import DenseIndex, DenseParams
    from rag.indexers.tables import add_tables
    from rag.indexers.tokenize import Tokenizer
    from rag.indexers.writes import IndexResult
    from rag.llm_openai import OpenAIGenerator
    from rag.llm_server import LLMServer
    from rag.multihop import MultiHopRetriever
    from rag.pipeline import RAG
    from rag.rerank import CrossEncoderReranker, Reranked
    from rag.retrievers.bm25 import BM25Retriever
    from rag.retrievers.dense import DenseRetriever
    from rag.retrievers.hybrid import Hybrid, fuse
    from rag.retrievers.table import TableRetriever
    from rag.retrievers.tool import ToolRetriever
    from rag.tools import Tool, http_tool, tool
    from rag.verify import NLIVerifier


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
