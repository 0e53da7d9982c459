"""A pipeline's parts from names: the LLM spec, the small models' names, and the routes a collection offers.

:meth:`RAG.from_collection <rag.answer.pipeline.RAG.from_collection>` builds its parts here, so that the pipeline
module only runs them. Models are looked up in the collection's own ``models/`` first (see
:mod:`rag.models.registry`); heavy modules (torch, transformers, DuckDB) load only for the parts asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rag.errors import ConfigError
from rag.protocols import Decomposer, Generator, Reader, Reranker, Retriever, Verifier


def generator(llm: str | Generator, max_new_tokens: int) -> Generator:
    """``local``, ``hf:<id or path>``, ``openai:<model>``, or a generator as it is."""
    if not isinstance(llm, str):
        return llm
    from rag.models.generate import make_generator

    made: Generator = make_generator(llm, max_new_tokens=max_new_tokens)
    return made


def reranker(spec: str | Reranker | None, model_root: Any, adapted: bool = True) -> Reranker | None:
    """A cross-encoder by registry name, path or HF id; ``auto``: the reranker the collection adopted (none when
    it adopted none, or with ``adapted`` off); an object as it is; None for none."""
    if spec == "auto":
        from rag.models.adoption import adopted_model

        spec = adopted_model(model_root, "reranker") if adapted else None
    if not isinstance(spec, str):
        return spec
    from rag.models.rerank import CrossEncoderReranker  # torch & sentence-transformers: loaded when one is used

    return CrossEncoderReranker(spec, collection=model_root)


def reader(spec: str | Reader | None, model_root: Any, required: bool = False) -> Reader | None:
    """A reader by registry name, path or HF id; ``auto``: the reader registered as ``default`` (in the collection,
    then the model home), or none when there is none and it is not ``required`` (no LLM to answer with); an object
    as it is; None for none."""
    if spec == "auto":
        from rag.models.registry import resolve_model

        if not resolve_model("default", "reader", model_root)[1] and not required:
            return None
        spec = "default"
    if not isinstance(spec, str):
        if spec is None and required:
            raise ConfigError("with no LLM (llm=None, --llm none) the answer comes from a reader; name or train one")
        return spec
    from rag.models.reader import Reader as ExtractiveReader  # transformers: loaded when a reader is used

    return ExtractiveReader(spec, collection=model_root)


def decomposer(spec: str | Decomposer | None, model_root: Any) -> Decomposer | None:
    """``rules``, a trained classifier's name or path (``learned``), an object as it is, or None."""
    if spec == "rules":
        from rag.models.decompose.rules import RuleDecomposer

        return RuleDecomposer()
    if isinstance(spec, str):
        from rag.models.decompose.learned import LearnedDecomposer

        return LearnedDecomposer(spec, collection=model_root)
    return spec


def verifier(spec: str | Verifier | None, model_root: Any, reader: Reader | None = None) -> Verifier | None:
    """``lexical`` (the model-free calibrated signal; with a ``reader``, also its question-answering consistency,
    :data:`~rag.models.verify_signals.LEXICAL_READER`), a trained verifier's name or path, an object, or None."""
    if not isinstance(spec, str):
        return spec
    from rag.models.verify import NLIVerifier
    from rag.models.verify_signals import LEXICAL_READER

    if spec == "lexical" and reader is not None:
        return NLIVerifier(None, collection=model_root, reader=reader, calibrator=LEXICAL_READER)  # type: ignore[arg-type]
    return NLIVerifier(None if spec == "lexical" else spec, collection=model_root)


def collection_routes(
    kb: Any,
    generator: Generator | None,
    tables: str | None,
    tools: Sequence[Any] | None,
    routes: Mapping[str, Retriever] | None,
) -> dict[str, Retriever]:
    """The routes of a collection's pipeline: its tables (``rows``/``sql``; only when it holds tables) and the
    given tools (selected with the collection's encoder); entries already in ``routes`` win."""
    out: dict[str, Retriever] = dict(routes or {})
    if tables and "table" not in out and kb.supports_tables and "kind" in kb.fields():
        from rag.retrievers.table import TableRetriever

        out["table"] = TableRetriever(kb, mode=tables, generator=generator if tables == "sql" else None)
    if tools and "tool" not in out:
        from rag.retrievers.tool import ToolRetriever

        out["tool"] = ToolRetriever(tools, encoder=kb.encoder, generator=generator)
    return out
