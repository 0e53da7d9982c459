"""The tool retriever: select tools for a (sub-)query, fill their arguments, call them, and return each
result as a citable :class:`~rag.types.Hit`.

1. Select: the tools' cards (:meth:`rag.tools.base.Tool.card`) are indexed with BM25 and, when an encoder is
   given, dense embeddings; the two rankings are fused with reciprocal rank fusion. Only the best tool is
   called by default; with ``k_tools > 1``, a lower-ranked one only when its relevance (its BM25 and dense
   scores as shares of each ranking's top score, weighted as in the fusion) is at least ``margin`` times the
   best tool's, so that a tool with optional arguments only is not called for every query.
2. Fill: with a generator, schema-constrained filling: the JSON skeleton (keys in schema order) is written
   here and the LLM completes one value at a time; its reply is cut at the first top-level ``,`` or ``}``,
   parsed, coerced to the declared type and enum values snapped to the closest allowed one. ``llm_mode`` says
   how its values combine with the rule filler's (by default the rules' values stand and the LLM fills the
   required arguments they lack). Without a generator, the rule filler (:mod:`rag.retrievers.tool_fill`) alone
   takes values from the query by type (dates, times, numbers, enum words, quoted strings, emails,
   identifiers, an arithmetic expression, place names after from/to, proper nouns).
3. Call: :func:`rag.tools.base.call_tool` validates the arguments (invalid: not called), asks the confirm callback
   for tools with side effects, and runs the tool with its timeout. Failures are left out of the hits and
   reported in the trace of :meth:`ToolRetriever.retrieve_traced`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from rag.checks import check_k, check_query
from rag.errors import ConfigError, RagError
from rag.retrievers.bm25_index import BM25Index
from rag.retrievers.hybrid import fuse
from rag.retrievers.tool_fill import grounded, rule_fill
from rag.retrievers.tool_values import coerce, first_value, is_date_arg, json_types, parse_date
from rag.text.injection import strip_control
from rag.tools.base import Tool, call_tool
from rag.types import Doc, Hit

__all__ = ["LLM_MODES", "ToolChoice", "ToolRetriever", "coerce", "first_value", "parse_date", "rule_fill"]

MAX_RESULT_CHARS = 4000
LLM_MODES = ("rules_first", "llm_first", "llm")
FILL_PROMPT = (
    "You fill in one argument of a tool call. Reply with the JSON value of that argument only.\n"
    "Tool: {name}: {description}\n"
    "Argument {key} ({kind}): {note}\n"
    "Question: {query}\n"
    "Tool call JSON so far: {so_far}"
)


class ToolChoice(NamedTuple):
    """A tool considered for a query: its fused selection score (RRF), its relevance (the tool's BM25 and dense
    scores as shares of each ranking's top score, weighted like the fusion; in [0, 1]) and why it is skipped
    (None: it is to be filled and called)."""

    tool: Tool
    score: float
    relevance: float
    skip: str | None = None


class ToolRetriever:
    """A Retriever over a registry of tools: selects, fills, calls, and returns results as citable hits.

    Args:
        tools: the registry (names must be unique).
        encoder: ``"default"`` (the shipped MiniLM, loaded on first use), another encoder name, an Encoder,
            or None for BM25 only.
        generator: an LLM (``generate(prompt, max_new_tokens=None) -> str``) for schema-constrained argument
            filling; None for the rule filler.
        k_tools: tools considered per query (each that is called and succeeds is a hit). The best one is always
            called; a lower-ranked one only when its relevance is at least ``margin`` times the best one's. The
            default, 1, calls the best tool only.
        margin: with ``k_tools > 1``, the share of the best tool's relevance a lower-ranked tool needs to be
            called too; relevance (see :class:`ToolChoice`) uses the rankings' scores, not only the ranks, which
            is what separates a close second from a tool that merely shares a word. 0 calls all ``k_tools``.
        confirm: ``confirm(tool, args) -> bool``, asked before running a tool marked ``confirm=True``.
        min_score: tools whose fused selection score (RRF) is below this are skipped, the best one too.
        weights: RRF weights of the (BM25, dense) rankings; ``(0, 1)`` is dense only, ``(1, 0)`` BM25 only. Tool
            cards are short and questions paraphrase them, so the dense ranking weighs more by default.
        rrf_k: RRF's rank constant; small, since a registry holds tens of tools, not millions of documents.
        max_new_tokens: tokens the LLM may write per argument value.
        llm_mode: how a generator's values and the rule filler's combine: ``"rules_first"`` (the rule filler's
            values, the LLM asked only for required arguments they lack), ``"llm_first"`` (the LLM's values; where
            one is null, invalid or unsupported by the query, i.e. a string or number not in it or an enum value
            snapped from something else, the rule filler's, and an unsupported optional one is dropped), or
            ``"llm"`` (the LLM's values alone, only coerced and validated).

    Example:
        >>> from rag.tools.builtin import BUILTIN_TOOLS
        >>> r = ToolRetriever(BUILTIN_TOOLS, encoder=None)
        >>> r.retrieve("what is 17 times 23?")[0].doc.text
        'calculator(expression="17 * 23") returned 391'
    """

    name = "tool"

    def __init__(
        self,
        tools: Iterable[Tool],
        encoder: Any = "default",
        generator: Any = None,
        k_tools: int = 1,
        margin: float = 0.8,
        confirm: Callable[[Tool, dict[str, Any]], bool] | None = None,
        min_score: float = 0.0,
        weights: Sequence[float] = (0.5, 1.0),
        rrf_k: float = 10.0,
        max_new_tokens: int = 24,
        llm_mode: str = "rules_first",
    ) -> None:
        self.tools = list(tools)
        if not self.tools or not all(isinstance(t, Tool) for t in self.tools):
            raise ConfigError(f"ToolRetriever needs a non-empty list of Tool objects, got {self.tools!r:.200}")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"tool names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}"
            )
        self.by_name = {t.name: t for t in self.tools}
        self.k_tools = check_k(k_tools)
        self.margin = float(margin)
        if not 0.0 <= self.margin <= 1.0:
            raise ConfigError(f"margin must be between 0 (call all k_tools tools) and 1, got {margin!r}")
        self.generator, self.confirm, self.min_score = generator, confirm, float(min_score)
        self.max_new_tokens, self.llm_mode = max_new_tokens, llm_mode
        if llm_mode not in LLM_MODES:
            raise ConfigError(f"llm_mode must be one of {LLM_MODES}, got {llm_mode!r}")
        self.weights, self.rrf_k = [float(w) for w in weights], float(rrf_k)
        if len(self.weights) != 2 or min(self.weights) < 0 or not any(self.weights):
            raise ConfigError(f"weights must be two non-negative numbers (bm25, dense), not both 0; got {weights!r}")
        if encoder is None and not self.weights[0]:
            raise ConfigError("weights (0, ...) leave only the dense ranking, but encoder is None; pass an encoder")
        self._encoder_spec = encoder
        self._encoder: Any = None
        self._vecs: np.ndarray | None = None
        self._docs = [Doc(text=t.card(), id=t.name, meta={"kind": "tool_card"}) for t in self.tools]
        self._bm25 = BM25Index()
        self._bm25.add(np.arange(len(self.tools)), [d.text for d in self._docs])

    @property
    def encoder(self) -> Any:
        """The dense encoder (loaded on first use), or None for BM25 only."""
        if self._encoder is None and self._encoder_spec is not None:
            if isinstance(self._encoder_spec, str):
                from rag.models.encoders import SentenceTransformerEncoder

                self._encoder = SentenceTransformerEncoder(self._encoder_spec)
            else:
                self._encoder = self._encoder_spec
        return self._encoder

    def scored(self, query: str) -> list[ToolChoice]:
        """Every tool matching the query (BM25 term overlap or any dense score) by fused RRF score, best first,
        with its relevance: its score in each ranking as a share of that ranking's top score (negative cosines
        count 0), averaged with the fusion weights over the rankings that ran."""
        check_query(query)
        n = len(self.tools)
        runs: list[list[Hit]] = [[], []]
        ran = [bool(self.weights[0]), False]
        if self.weights[0]:
            ords, scores = self._bm25.search([query], k=n)
            runs[0] = [Hit(self._docs[o], float(s), "bm25") for o, s in zip(ords[0], scores[0], strict=True) if o >= 0]
        if self.weights[1] and self.encoder is not None:
            if self._vecs is None:
                self._vecs = np.asarray(self.encoder.encode([d.text for d in self._docs]), dtype=np.float32)
            sims = self._vecs @ np.asarray(self.encoder.encode([query]), dtype=np.float32)[0]
            runs[1] = [Hit(self._docs[i], float(sims[i]), "dense") for i in np.argsort(-sims, kind="stable")]
            ran[1] = True
        relevance: dict[str, float] = {}
        total = sum(w for w, r in zip(self.weights, ran, strict=True) if r)
        for run, w in zip(runs, self.weights, strict=True):
            top = max((h.score for h in run), default=0.0)
            for h in run if top > 0 else []:
                relevance[h.doc.id] = relevance.get(h.doc.id, 0.0) + w * max(h.score, 0.0) / top / total
        fused = fuse(runs, n, weights=self.weights, rrf_k=self.rrf_k, source=self.name)
        return [ToolChoice(self.by_name[h.doc.id], h.score, relevance.get(h.doc.id, 0.0)) for h in fused]

    def ranked(self, query: str) -> list[tuple[Tool, float]]:
        """Every tool matching the query (BM25 term overlap or any dense score), by fused RRF score."""
        return [(c.tool, c.score) for c in self.scored(query)]

    def select(self, query: str, k: int | None = None) -> list[tuple[Tool, float]]:
        """The top ``k`` (default ``k_tools``) tools for the query with their fused scores, best first (``min_score``
        applies, ``margin`` does not: see :meth:`plan` for the tools that are called)."""
        k = check_k(self.k_tools if k is None else k)
        return [(t, s) for t, s in self.ranked(query) if s >= self.min_score][:k]

    def plan(self, query: str, filters: Mapping[str, Any] | None = None) -> list[ToolChoice]:
        """The tools :meth:`retrieve` considers for ``query``: the top ``k_tools`` that ``filters`` allow, best
        first, with ``skip`` saying why one is not called: a fused score under ``min_score``, or, below the best
        tool, a relevance under ``margin`` times the best tool's."""
        allowed = self._allowed(filters)
        top = [c for c in self.scored(query) if allowed is None or c.tool.name in allowed][: self.k_tools]
        bar = self.margin * top[0].relevance if top else 0.0
        out: list[ToolChoice] = []
        for i, c in enumerate(top):
            if c.score < self.min_score:
                c = c._replace(skip=f"score {c.score:.4f} < min_score {self.min_score}")
            elif i and c.relevance < bar:
                c = c._replace(
                    skip=f"relevance {c.relevance:.3f} < {self.margin:g} x the best's {top[0].relevance:.3f}"
                )
            out.append(c)
        return out

    def fill(self, tool: Tool, query: str) -> dict[str, Any]:
        """Arguments for ``tool`` from ``query``: LLM filling with a generator, else the rule filler."""
        return self._llm_fill(tool, query) if self.generator is not None else rule_fill(tool, query)

    def _generate(self, prompt: str) -> str:
        if "max_new_tokens" in inspect.signature(self.generator.generate).parameters:
            return str(self.generator.generate(prompt, max_new_tokens=self.max_new_tokens))
        return str(self.generator.generate(prompt))  # a generator without max_new_tokens

    def _llm_fill(self, tool: Tool, query: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        required = set(tool.parameters.get("required", []))
        rules = rule_fill(tool, query) if self.llm_mode != "llm" else {}
        for key, prop in tool.parameters.get("properties", {}).items():
            if self.llm_mode == "rules_first" and (key in rules or key not in required):
                if key in rules:
                    args[key] = rules[key]
                continue
            so_far = json.dumps(args, ensure_ascii=False)[:-1] + (", " if args else "") + f"{json.dumps(key)}: "
            kind = "/".join(json_types(prop)) or "any"
            if prop.get("enum"):
                kind += ", one of " + json.dumps(prop["enum"])
            if is_date_arg(key, prop):
                kind += ", a date YYYY-MM-DD"
            note = f"{prop.get('description', '')} ({'required' if key in required else 'optional: null to skip'})"
            prompt = FILL_PROMPT.format(
                name=tool.name,
                description=tool.description,
                key=key,
                kind=kind,
                note=note.strip(),
                query=strip_control(query),
                so_far=so_far,
            )
            raw = first_value(self._generate(prompt), key)
            value = coerce(raw, prop)
            if self.llm_mode == "llm_first" and not grounded(key, prop, raw, value, query):
                value = rules.get(key, value if key in required else None)
            if value is None and key not in required:
                continue
            args[key] = value
        return args

    def retrieve(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """Call the selected tools (:meth:`plan`) and return their results as hits (at most ``k``), best first."""
        return self.retrieve_traced(query, k, filters)[0]

    def retrieve_traced(
        self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None
    ) -> tuple[list[Hit], list[dict[str, Any]]]:
        """Hits as :meth:`retrieve`, and one trace event per tool considered (:meth:`plan`): tool, score, relevance,
        arguments, status (ok / invalid_arguments / needs_confirmation / timeout / error / skipped: under
        ``min_score``, under ``margin`` of the best tool, or ``k`` hits reached), error, elapsed_ms.

        ``filters`` may hold ``{"tool": name or [names]}`` to restrict the tools considered.
        """
        check_query(query)
        k = check_k(k)
        hits: list[Hit] = []
        events: list[dict[str, Any]] = []
        for tool, score, relevance, skip in self.plan(query, filters):
            t0 = time.perf_counter()
            event: dict[str, Any] = {"tool": tool.name, "score": score, "relevance": relevance, "arguments": {}}
            event["error"] = skip or (f"{k} hits" if len(hits) >= k else None)
            if event["error"]:
                events.append({**event, "status": "skipped", "elapsed_ms": 0.0})
                continue
            try:
                args = self.fill(tool, query)
            except RagError as e:
                ms = (time.perf_counter() - t0) * 1e3
                events.append({**event, "status": "error", "error": f"filling arguments failed: {e}", "elapsed_ms": ms})
                continue
            result = call_tool(tool, args, self.confirm)
            event.update(arguments=args, status=result.status, error=result.error)
            events.append({**event, "elapsed_ms": (time.perf_counter() - t0) * 1e3})
            if result.ok:
                hits.append(self._hit(tool, args, result.value, score))
        return hits, events

    def _allowed(self, filters: Mapping[str, Any] | None) -> set[str] | None:
        if not filters:
            return None
        unknown = set(filters) - {"tool"}
        if unknown:
            raise ConfigError(f"ToolRetriever filters on 'tool' only (a name or a list), got fields {sorted(unknown)}")
        want = filters["tool"]
        return {want} if isinstance(want, str) else set(want)

    def _hit(self, tool: Tool, args: dict[str, Any], value: Any, score: float) -> Hit:
        call = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if len(shown) > MAX_RESULT_CHARS:
            shown = shown[:MAX_RESULT_CHARS] + " ... (truncated)"
        digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:12]
        meta = {"kind": "tool", "tool": tool.name, "arguments": args, "source": f"tool:{tool.name}"}
        return Hit(
            Doc(f"{tool.name}({call}) returned {shown}", id=f"tool:{tool.name}:{digest}", meta=meta), score, "tool"
        )
