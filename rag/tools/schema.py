"""JSON schemas of tool arguments: built from a function's type hints and Google-style docstring
(:func:`schema_from_function`, :func:`parse_docstring`), and checked (:func:`validate_args`) against the subset
of JSON schema tools use: type, properties, required, additionalProperties, enum, minimum/maximum,
minLength/maxLength, pattern, format date / date-time, items.

:mod:`rag.tools.base` re-exports :func:`schema_from_function` and :func:`validate_args`.

Example:
    >>> def add(a: int, b: int = 1) -> int: ...
    >>> schema_from_function(add)["required"]
    ['a']
    >>> validate_args(schema_from_function(add), {"a": "2"})
    ["argument 'a': expected integer, got str '2'"]
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from rag.errors import ConfigError

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    dt.date: {"type": "string", "format": "date"},
    dt.datetime: {"type": "string", "format": "date-time"},
}


# ---------------------------------------------------------------- schemas from functions
def _type_schema(hint: Any, where: str) -> dict[str, Any]:
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint is type(None):
        return {"type": "null"}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        kinds = {type(a) for a in args}
        names = {bool: "boolean", int: "integer", float: "number", str: "string"}
        out: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1 and next(iter(kinds)) in names:
            out["type"] = names[next(iter(kinds))]
        return out
    if origin is typing.Union or origin is types.UnionType:
        subs = [_type_schema(a, where) for a in args if a is not type(None)]
        nullable = len(subs) < len(args)
        if len(subs) == 1 and not nullable:
            return subs[0]
        if all(set(s) == {"type"} and isinstance(s["type"], str) for s in subs):
            return {"type": [s["type"] for s in subs] + (["null"] if nullable else [])}
        if len(subs) == 1 and "type" in subs[0] and isinstance(subs[0]["type"], str):
            out = {**subs[0], "type": [subs[0]["type"], "null"]}
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
            return out
        return {}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        item = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
        return {"type": "array", **({"items": _type_schema(item, where)} if item is not None else {})}
    if origin is dict:
        return {"type": "object"}
    raise ConfigError(
        f"{where}: cannot describe type {hint!r} in JSON schema; use str, int, float, bool, list[...], "
        "Literal[...], Optional[...], datetime.date, or pass parameters yourself"
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A Google-style docstring's first paragraph and its ``Args:`` entries."""
    lines = doc.splitlines()
    desc: list[str] = []
    i = 0
    while i < len(lines) and lines[i].strip() and not _SECTION.match(lines[i]):
        desc.append(lines[i].strip())
        i += 1
    args: dict[str, str] = {}
    in_args, current, base = False, "", -1
    for line in lines[i:]:
        m = _SECTION.match(line)
        if m:
            in_args, current, base = m.group(1) in ("Args", "Arguments", "Parameters"), "", -1
            continue
        if not in_args or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        am = _ARG_LINE.match(line)
        if am and (base < 0 or indent <= base):
            base, current = indent, am.group(1)
            args[current] = am.group(2).strip()
        elif current:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(desc), args


def schema_from_function(fn: Callable[..., Any], arg_docs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON schema of ``fn``'s arguments: types from hints, defaults make arguments optional."""
    hints = typing.get_type_hints(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        prop = _type_schema(hints.get(p.name, p.annotation), f"{getattr(fn, '__name__', fn)}({p.name})")
        if arg_docs and arg_docs.get(p.name):
            prop["description"] = arg_docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
        elif isinstance(p.default, str | int | float | bool | type(None)):
            prop["default"] = p.default
        props[p.name] = prop
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


# ---------------------------------------------------------------- validation
def _is(value: Any, t: str) -> bool:
    if t in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, int | float)):
        return False
    checks: dict[str, Callable[[Any], bool]] = {
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()),
        "number": lambda v: isinstance(v, int) or math.isfinite(v),
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list | tuple),
        "object": lambda v: isinstance(v, Mapping),
    }
    return t in checks and checks[t](value)


def _short(v: Any) -> str:
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def _check(schema: Mapping[str, Any], v: Any, where: str, errs: list[str]) -> None:
    t = schema.get("type")
    if t is not None:
        ts = [t] if isinstance(t, str) else list(t)
        if not any(_is(v, x) for x in ts):
            errs.append(f"{where}: expected {' or '.join(ts)}, got {_short(v)}")
            return
    enum = schema.get("enum")
    if enum is not None and not any(v == e and isinstance(v, bool) == isinstance(e, bool) for e in enum):
        errs.append(f"{where}: {v!r} is not one of {list(enum)}")
    if isinstance(v, int | float) and not isinstance(v, bool):
        for key, bad, word in (("minimum", v.__lt__, ">="), ("maximum", v.__gt__, "<=")):
            if key in schema and bad(schema[key]):
                errs.append(f"{where}: {v!r} must be {word} {schema[key]}")
    if isinstance(v, str):
        if len(v) < schema.get("minLength", 0) or len(v) > schema.get("maxLength", math.inf):
            errs.append(f"{where}: length {len(v)} outside [{schema.get('minLength', 0)}, {schema.get('maxLength')}]")
        if "pattern" in schema and not re.search(schema["pattern"], v):
            errs.append(f"{where}: {v!r} does not match the pattern {schema['pattern']!r}")
        fmt = {"date": dt.date, "date-time": dt.datetime}.get(schema.get("format", ""))
        if fmt is not None:
            try:
                fmt.fromisoformat(v)
            except ValueError:
                errs.append(f"{where}: {v!r} is not an ISO {schema['format']} (YYYY-MM-DD)")
    if isinstance(v, list | tuple) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(v):
            _check(schema["items"], item, f"{where}[{i}]", errs)
    if isinstance(v, Mapping):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in v:
                errs.append(f"{where}: missing required argument {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in v.items():
            sub = f"{where}.{key}" if where != "arguments" else f"argument {key!r}"
            if key in props:
                _check(props[key], item, sub, errs)
            elif extra is False:
                errs.append(f"{where}: unexpected argument {key!r} (allowed: {', '.join(props) or 'none'})")
            elif isinstance(extra, Mapping):
                _check(extra, item, sub, errs)


def validate_args(schema: Mapping[str, Any], args: Any) -> list[str]:
    """Human-readable reasons ``args`` fails ``schema`` (a JSON-schema subset); empty when valid.

    Example:
        >>> validate_args({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, {})
        ["arguments: missing required argument 'n'"]
    """
    errs: list[str] = []
    _check(schema, args, "arguments", errs)
    return errs
