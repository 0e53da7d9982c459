"""Tools: Python callables and HTTP endpoints described by a name, a description and a JSON schema of
their arguments, so that a retriever can select them for a question, fill their arguments and call them.

* :class:`Tool` describes one tool; :func:`tool` builds one from a function (schema from the type hints,
  descriptions from the Google-style docstring); :func:`http_tool` from an HTTP endpoint (stdlib urllib).
* :func:`validate_args` checks arguments against a JSON-schema subset (type, properties, required,
  additionalProperties false, enum, minimum/maximum, minLength/maxLength, pattern, format date, items);
  it and :func:`schema_from_function` live in :mod:`rag.tools.schema` and are re-exported here.
* :func:`call_tool` validates, asks for confirmation when the tool has side effects, runs it with a timeout
  and returns a :class:`ToolResult`; it never raises for a tool's failure.

Example:
    >>> @tool
    ... def add(a: int, b: int = 1) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> call_tool(add, {"a": 2}).value
    3
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import re
import threading
import time
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from rag.errors import ConfigError, SourceError
from rag.tools.schema import parse_docstring, schema_from_function, validate_args  # the last two re-exported

MAX_RESPONSE_BYTES = 1_000_000
TOOL_STATUSES = ("ok", "invalid_arguments", "needs_confirmation", "timeout", "error")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Tool:
    """A callable tool: a Python function (``fn``) or an HTTP endpoint (``url``), and its JSON-schema arguments.

    ``confirm=True`` marks a tool with side effects: :func:`call_tool` runs it only when a confirmation
    callback approves the call.

    Example:
        >>> t = Tool("echo", "Repeat a text.", {"type": "object", "properties": {"text": {"type": "string"}}},
        ...          fn=lambda text: text)
        >>> t.card()
        'echo. Repeat a text. Arguments: text.'
    """

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    fn: Callable[..., Any] | None = None
    url: str | None = None
    method: str = "GET"
    confirm: bool = False
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"tool name must be letters, digits, _ . - (at most 64), got {self.name!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ConfigError(f"tool {self.name!r} has no description; selection needs one: pass description=")
        p = self.parameters
        if not isinstance(p, dict) or p.get("type") != "object" or not isinstance(p.get("properties", {}), dict):
            raise ConfigError(
                f"tool {self.name!r}: parameters must be a JSON schema object "
                f'({{"type": "object", "properties": {{...}}}}), got {p!r}'
            )
        if self.fn is not None and self.url is not None:
            raise ConfigError(f"tool {self.name!r} has both fn and url; give one")
        if self.url is not None:
            check_url(self.url)
        if self.method.upper() not in _METHODS:
            raise ConfigError(f"tool {self.name!r}: method must be one of {_METHODS}, got {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise ConfigError(f"tool {self.name!r}: timeout must be a positive number of seconds, got {self.timeout!r}")

    def card(self) -> str:
        """The text indexed for selection: name (underscores split), description, arguments and their notes."""
        words = re.sub(r"(?<=[a-z])(?=[A-Z])|[_.\-]+", " ", self.name).strip()
        parts = []
        for key, prop in self.parameters.get("properties", {}).items():
            note = str(prop.get("description", "")).strip().rstrip(".") if isinstance(prop, dict) else ""
            if isinstance(prop, dict) and prop.get("enum"):
                note = f"{note} (one of: {', '.join(map(str, prop['enum']))})".strip()
            parts.append(f"{key.replace('_', ' ')}: {note}" if note else key.replace("_", " "))
        args = f" Arguments: {'; '.join(parts)}." if parts else ""
        return f"{words}. {self.description.strip()}{args}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (function-calling shape): name, description, parameters, confirm, timeout, url."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "parameters": self.parameters}
        out.update(confirm=self.confirm, timeout=self.timeout)
        if self.url is not None:
            out.update(url=self.url, method=self.method)
        return out


@dataclass(frozen=True)
class ToolResult:
    """The outcome of :func:`call_tool`: ``ok`` with a ``value``, or an ``error`` and a ``status`` saying why."""

    tool: str
    arguments: dict[str, Any]
    ok: bool
    value: Any = None
    error: str | None = None
    elapsed_ms: float = 0.0
    status: str = "ok"


# ---------------------------------------------------------------- building tools from functions
def _with_dates(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` taking ISO strings for its ``datetime.date`` parameters (the JSON form of a date)."""
    hints = typing.get_type_hints(fn)
    dates = {k: h for k, h in hints.items() if h in (dt.date, dt.datetime) and k != "return"}
    if not dates:
        return fn

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        for k, h in dates.items():
            if isinstance(kwargs.get(k), str):
                kwargs[k] = h.fromisoformat(kwargs[k])
        return fn(**kwargs)

    return wrapper


@overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = ...,
    description: str | None = ...,
    confirm: bool = ...,
    timeout: float = ...,
) -> Tool: ...
@overload
def tool(
    fn: None = None, *, name: str | None = ..., description: str | None = ..., confirm: bool = ..., timeout: float = ...
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout: float = 10.0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function: ``@tool``, ``@tool(confirm=True)`` or ``tool(fn)``.

    The description is the docstring's first paragraph; argument descriptions come from its ``Args:`` section.
    """

    def make(f: Callable[..., Any]) -> Tool:
        desc, arg_docs = parse_docstring(inspect.getdoc(f) or "")
        return Tool(
            name=name or f.__name__,
            description=description or desc,
            parameters=schema_from_function(f, arg_docs),
            fn=_with_dates(f),
            confirm=confirm,
            timeout=timeout,
        )

    return make if fn is None else make(fn)


# ---------------------------------------------------------------- HTTP tools
def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"a tool URL must be http:// or https:// with a host, got {url!r}")
    return url


def http_tool(
    name: str,
    description: str,
    url: str,
    parameters: dict[str, Any],
    method: str = "GET",
    confirm: bool | None = None,
    timeout: float = 10.0,
) -> Tool:
    """A tool calling an HTTP endpoint. GET/DELETE send the arguments as the query string, other methods as
    a JSON body; ``{name}`` placeholders in the URL are filled from the arguments. ``confirm`` defaults to
    True for any method but GET (those have side effects)."""
    method = method.upper()
    need = method != "GET" if confirm is None else confirm
    return Tool(name, description, parameters, url=check_url(url), method=method, confirm=need, timeout=timeout)


def _http_call(t: Tool, args: Mapping[str, Any]) -> Any:
    assert t.url is not None
    url, rest = t.url, dict(args)
    for key in re.findall(r"\{(\w+)\}", url):
        url = url.replace(f"{{{key}}}", urllib.parse.quote(str(rest.pop(key, "")), safe=""))
    headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5", "User-Agent": "pilotfish-tool"}
    data = None
    if t.method in ("GET", "DELETE") and rest:
        flat = {k: json.dumps(v) if isinstance(v, bool | dict) else v for k, v in rest.items()}
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(flat, doseq=True)
    elif rest:
        data, headers["Content-Type"] = json.dumps(rest).encode(), "application/json"
    req = urllib.request.Request(url, data=data, method=t.method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=t.timeout) as resp:
            body = resp.read(MAX_RESPONSE_BYTES + 1)
            ctype, charset = resp.headers.get_content_type(), resp.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as e:
        raise SourceError(url, f"HTTP {e.code} {e.reason}: {e.read(300).decode('utf-8', 'replace')!r}") from e
    except (urllib.error.URLError, OSError) as e:
        raise SourceError(url, f"request failed ({getattr(e, 'reason', e)}); is the server up?") from e
    if len(body) > MAX_RESPONSE_BYTES:
        raise SourceError(url, f"response larger than {MAX_RESPONSE_BYTES} bytes; ask the endpoint for less")
    text = body.decode(charset, errors="replace")
    if ctype.endswith("json") or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


# ---------------------------------------------------------------- calling
def call_tool(
    t: Tool,
    args: Mapping[str, Any],
    confirm: Callable[[Tool, dict[str, Any]], bool] | None = None,
) -> ToolResult:
    """Validate ``args``, check confirmation, run ``t`` with its timeout; failures become the result's error.

    A tool with side effects (``t.confirm``) runs only when ``confirm(tool, args)`` returns True. A call that
    outlives ``t.timeout`` is abandoned (its daemon thread is left to finish on its own).
    """
    t0 = time.perf_counter()
    arguments = dict(args) if isinstance(args, Mapping) else {}

    def done(status: str, value: Any = None, error: str | None = None) -> ToolResult:
        ms = (time.perf_counter() - t0) * 1e3
        return ToolResult(t.name, arguments, status == "ok", value, error, ms, status)

    problems = validate_args(t.parameters, args)
    if problems:
        return done(
            "invalid_arguments", error=f"{t.name} was not called; its arguments fail the schema: " + "; ".join(problems)
        )
    if t.confirm:
        try:
            approved = confirm is not None and bool(confirm(t, dict(arguments)))
        except Exception as e:
            return done("error", error=f"the confirmation callback for {t.name} raised {type(e).__name__}: {e}")
        if not approved:
            why = "the confirmation callback declined" if confirm is not None else "no confirm callback was given"
            return done(
                "needs_confirmation",
                error=f"{t.name} has side effects and needs confirmation ({why}); "
                "pass confirm=callable returning True to run it",
            )
    if t.fn is None and t.url is None:
        return done("error", error=f"{t.name} has no implementation (neither fn nor url); it can only be selected")
    target: Callable[..., Any] = t.fn if t.fn is not None else functools.partial(_http_call, t)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = target(**arguments) if t.fn is not None else target(arguments)
        except BaseException as e:
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True, name=f"tool-{t.name}")
    worker.start()
    worker.join(t.timeout)
    if worker.is_alive():
        return done(
            "timeout",
            error=f"{t.name} timed out after {t.timeout:g}s and was abandoned; raise its timeout or fix the tool",
        )
    if "error" in box:
        exc = box["error"]
        return done("error", error=f"{t.name} raised {type(exc).__name__}: {exc}")
    return done("ok", value=box.get("value"))
