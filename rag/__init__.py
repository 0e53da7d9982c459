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
from rag.version import __version__

_LAZY = {
    "Collection": "rag.indexers.collection",
    "DirectoryCollection": "rag.indexers.directory.collection",
    "PgCollection": "rag.indexers.pg.collection",
    "IndexResult": "rag.indexers.writes",
    "BM25Index": "rag.retrievers.bm25_index",
    "BM25Params": "rag.retrievers.bm25_index",
    "Tokenizer": "rag.text.tokenizer",
    "Chunker": "rag.indexers.chunking",
    "DenseIndex": "rag.indexers.dense",
    "DenseParams": "rag.indexers.dense",
    "BM25Retriever": "rag.retrievers.bm25",
    "DenseRetriever": "rag.retrievers.dense",
    "Hybrid": "rag.retrievers.hybrid",
    "fuse": "rag.retrievers.hybrid",
    "SentenceTransformerEncoder": "rag.models.encoders",
    "load_path": "rag.connectors.files",
    "CrossEncoderReranker": "rag.models.rerank",
    "Reranked": "rag.models.rerank",
    "NLIVerifier": "rag.models.verify",
    "Reader": "rag.models.reader",
    "RuleDecomposer": "rag.models.decompose.rules",
    "PromptedDecomposer": "rag.models.decompose.prompted",
    "LearnedDecomposer": "rag.models.decompose.learned",
    "MultiHopRetriever": "rag.retrievers.multihop",
    "LocalGenerator": "rag.models.generate",
    "OpenAIGenerator": "rag.models.llm_openai",
    "LLMServer": "rag.apps.llm_server",
    "RAG": "rag.answer.pipeline",
    "Cascade": "rag.answer.cascade",
    "Extractive": "rag.answer.cascade",
    "add_tables": "rag.indexers.tables",
    "TableRetriever": "rag.retrievers.table",
    "ToolRetriever": "rag.retrievers.tool",
    "Tool": "rag.tools.base",
    "tool": "rag.tools.base",
    "http_tool": "rag.tools.base",
    "adapt": "rag.train.adapt",
    "AdaptConfig": "rag.train.adapt",
}

__all__ = [
    "RAG",
    "AdaptConfig",
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
    "Reader",
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
    "__version__",
    "adapt",
    "add_tables",
    "fuse",
    "http_tool",
    "load_path",
    "tool",
]

if TYPE_CHECKING:
    from rag.answer.cascade import Cascade, Extractive
    from rag.answer.pipeline import RAG
    from rag.apps.llm_server import LLMServer
    from rag.connectors.files import load_path
    from rag.indexers.chunking import Chunker
    from rag.indexers.collection import Collection
    from rag.indexers.dense import DenseIndex, DenseParams
    from rag.indexers.tables import add_tables
    from rag.indexers.writes import IndexResult
    from rag.models.decompose.learned import LearnedDecomposer
    from rag.models.decompose.prompted import PromptedDecomposer
    from rag.models.decompose.rules import RuleDecomposer
    from rag.models.encoders import SentenceTransformerEncoder
    from rag.models.generate import LocalGenerator
    from rag.models.llm_openai import OpenAIGenerator
    from rag.models.reader import Reader
    from rag.models.rerank import CrossEncoderReranker, Reranked
    from rag.models.verify import NLIVerifier
    from rag.retrievers.bm25 import BM25Retriever
    from rag.retrievers.bm25_index import BM25Index, BM25Params
    from rag.retrievers.dense import DenseRetriever
    from rag.retrievers.hybrid import Hybrid, fuse
    from rag.retrievers.multihop import MultiHopRetriever
    from rag.retrievers.table import TableRetriever
    from rag.retrievers.tool import ToolRetriever
    from rag.text.tokenizer import Tokenizer
    from rag.tools.base import Tool, http_tool, tool


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
