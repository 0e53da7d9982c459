"""Built-in tools: a safe calculator and four small date/time tools.

The date/time part is several small tools rather than one with an ``operation`` argument: each has a
description of its own to be selected by, and simple arguments a small model or the rule filler can fill.

* ``calculator(expression)``: arithmetic evaluated by walking the syntax tree (no ``eval``).
* ``current_datetime(utc_offset=0)``: today's date, the time and the weekday at a UTC offset in hours.
* ``days_between(start, end)``: days from one ISO date to another.
* ``add_days(date, days)``: an ISO date plus (or minus) a number of days.
* ``weekday(date)``: the day of the week of an ISO date.

Example:
    >>> calculator.fn(expression="17*23")
    391
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from collections.abc import Callable
from typing import Any

from rag.errors import UnsafeQueryError
from rag.tools.base import Tool, tool

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**1000

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.pow,  # "2^10" as on a calculator
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
_NAMES = {"pi": math.pi, "e": math.e}


def _power(base: Any, exp: Any) -> Any:
    if abs(exp) > MAX_EXPONENT:
        raise ValueError(f"exponent {exp} is too large (at most {MAX_EXPONENT})")
    if base not in (0, 1, -1) and abs(exp) * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ValueError(f"{base} ** {exp} is too large to compute (over 10**1000)")
    return base**exp


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise UnsafeQueryError(f"only numbers are allowed in an expression, got {node.value!r}")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow | ast.BitXor):
            value = _power(left, right)
        else:
            value = _BINARY[type(node.op)](left, right)
        if isinstance(value, int) and abs(value) > MAX_MAGNITUDE:
            raise ValueError("the result is too large (over 10**1000)")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in _NAMES:
            return _NAMES[node.id]
        raise UnsafeQueryError(f"unknown name {node.id!r}; allowed names: {', '.join(_NAMES)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise UnsafeQueryError(
                f"only the functions {', '.join(_FUNCTIONS)} may be called (positional arguments only), "
                f"got {ast.unparse(node.func)!r}"
            )
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise UnsafeQueryError(
        f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed; use numbers, + - * / // % ** ^, "
        f"parentheses, {', '.join(_FUNCTIONS)} and {', '.join(_NAMES)}"
    )


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; raises UnsafeQueryError for anything but arithmetic."""
    if not isinstance(expression, str) or not expression.strip():
        raise UnsafeQueryError(f"expression must be a non-empty string, got {expression!r}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeQueryError(f"expression is {len(expression)} characters; at most {MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise UnsafeQueryError(f"cannot parse {expression!r} as arithmetic: {e.msg}") from e
    try:
        value = _eval(tree)
    except ZeroDivisionError as e:
        raise ValueError(f"division by zero in {expression!r}") from e
    except OverflowError as e:
        raise ValueError(f"{expression!r} overflows: {e}") from e
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{expression!r} has no finite real value (got {value})")
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
        return float(f"{value:.12g}")
    return int(value)


@tool
def calculator(expression: str) -> int | float:
    """Calculator for arithmetic: add (plus), subtract (minus), multiply (times), divide, powers, square roots,
    percentages; e.g. 17 times 23, 2 to the power of 10, the square root of 2, 15 percent of 80.

    Allowed in an expression: numbers, + - * / // % ** ^ (power), parentheses, the functions sqrt abs round min
    max log exp floor ceil, and pi and e. Anything else (names, attributes, strings) is refused.

    Args:
        expression: the arithmetic to evaluate, e.g. (2 + 3) * 4 or sqrt(2) ** 3.
    """
    return evaluate(expression)


@tool
def current_datetime(utc_offset: float = 0.0) -> str:
    """The current date and clock time now (today's date, hour and minute, day of the week) in a timezone given
    as a UTC offset.

    Args:
        utc_offset: hours ahead of UTC (e.g. 2 for Central European Summer Time, -5 for New York in winter).
    """
    if not -14 <= utc_offset <= 14:
        raise ValueError(f"utc_offset must be between -14 and 14 hours, got {utc_offset}")
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=utc_offset)))
    return f"{now:%Y-%m-%d %H:%M} ({now:%A}), UTC{now:%z}"


@tool
def days_between(start: dt.date, end: dt.date) -> int:
    """Number of days between two dates (from start to end; negative when end is earlier).

    Args:
        start: the first date, YYYY-MM-DD.
        end: the second date, YYYY-MM-DD.
    """
    return (end - start).days


@tool
def add_days(date: dt.date, days: int) -> str:
    """The date a number of days after (or, for negative days, before) a given date.

    Args:
        date: the starting date, YYYY-MM-DD.
        days: days to add; negative to go back.
    """
    return (date + dt.timedelta(days=days)).isoformat()


@tool
def weekday(date: dt.date) -> str:
    """The day of the week (Monday to Sunday) a date falls on.

    Args:
        date: the date, YYYY-MM-DD.
    """
    return f"{date:%A}"


BUILTIN_TOOLS: tuple[Tool, ...] = (calculator, current_datetime, days_between, add_days, weekday)
