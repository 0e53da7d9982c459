"""Tools: schemas from functions, validation, the calculator and date tools, HTTP tools against a real local
server, timeouts, errors, confirmation, selection, rule and LLM argument filling, the tool retriever."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

from rag.errors import ConfigError, QueryError
from rag.protocols import Retriever
from rag.retrievers import tool_fill, tool_values
from rag.retrievers.tool import ToolRetriever, coerce, first_value, parse_date, rule_fill
from rag.tools import schema as tool_schema
from rag.tools.base import Tool, ToolResult, call_tool, http_tool, schema_from_function, tool, validate_args
from rag.tools.builtin import BUILTIN_TOOLS, add_days, calculator, current_datetime, days_between, evaluate, weekday
from tests.support.fakes import Scripted


# ---------------------------------------------------------------- schemas from functions
def forecast(
    city: str,
    days: int = 3,
    units: Literal["celsius", "fahrenheit"] = "celsius",
    hours: list[int] | None = None,
    detailed: bool = False,
    ratio: float | None = None,
    start: dt.date | None = None,
) -> str:
    """Weather forecast for a city,
    day by day.

    More text that is not part of the description.

    Args:
        city: the city name, e.g. Lisbon.
        days (int): days ahead to cover,
            from 1 to 14.
        units: the temperature unit.

    Returns:
        The forecast.
    """
    return f"{city} {days} {units}"


def test_schema_from_hints_and_docstring() -> None:
    t = tool(forecast)
    assert t.name == "forecast"
    assert t.description == "Weather forecast for a city, day by day."
    p = t.parameters
    assert p["type"] == "object" and p["additionalProperties"] is False
    assert p["required"] == ["city"]
    props = p["properties"]
    assert props["city"] == {"type": "string", "description": "the city name, e.g. Lisbon."}
    assert props["days"] == {"type": "integer", "description": "days ahead to cover, from 1 to 14.", "default": 3}
    assert props["units"]["enum"] == ["celsius", "fahrenheit"] and props["units"]["type"] == "string"
    assert props["units"]["default"] == "celsius"
    assert props["hours"]["type"] == ["array", "null"] and props["hours"]["items"] == {"type": "integer"}
    assert props["detailed"] == {"type": "boolean", "default": False}
    assert props["ratio"]["type"] == ["number", "null"]
    assert props["start"]["format"] == "date" and props["start"]["type"] == ["string", "null"]
    assert "Returns" not in json.dumps(props)


def test_tool_decorator_forms_and_checks() -> None:
    @tool
    def plain(x: int) -> int:
        """Double x."""
        return 2 * x

    @tool(name="danger", confirm=True, timeout=2)
    def risky(path: str) -> str:
        """Delete a file."""
        return path

    assert isinstance(plain, Tool) and plain.fn is not None and plain.fn(x=4) == 8
    assert risky.name == "danger" and risky.confirm and risky.timeout == 2

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="no description"):
        tool(undocumented)
    assert tool(undocumented, description="Identity.").description == "Identity."

    def odd(x: complex) -> complex:
        """Odd type."""
        return x

    with pytest.raises(ConfigError, match="cannot describe type"):
        tool(odd)
    with pytest.raises(ConfigError, match="tool name"):
        Tool("bad name!", "x")
    with pytest.raises(ConfigError, match="JSON schema object"):
        Tool("t", "d", {"type": "array"})
    with pytest.raises(ConfigError, match="timeout"):
        Tool("t", "d", timeout=0)


def test_date_parameters_are_converted_from_iso_strings() -> None:
    @tool
    def next_day(day: dt.date) -> str:
        """The next day."""
        return (day + dt.timedelta(days=1)).isoformat()

    assert call_tool(next_day, {"day": "2024-02-28"}).value == "2024-02-29"
    assert call_tool(next_day, {"day": "28.02.2024"}).status == "invalid_arguments"


def test_split_modules_keep_the_public_names() -> None:
    assert validate_args is tool_schema.validate_args and schema_from_function is tool_schema.schema_from_function
    assert rule_fill is tool_fill.rule_fill
    assert (coerce, first_value, parse_date) == (tool_values.coerce, tool_values.first_value, tool_values.parse_date)


def test_card_and_to_dict() -> None:
    t = tool(forecast)
    card = t.card()
    assert card.startswith("forecast. Weather forecast for a city")
    assert "units: the temperature unit (one of: celsius, fahrenheit)" in card
    d = t.to_dict()
    assert d["name"] == "forecast" and d["parameters"] == t.parameters and d["confirm"] is False
    json.dumps(d)  # JSON-able


# ---------------------------------------------------------------- validation
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "x": {"type": ["number", "null"]},
        "unit": {"enum": ["km", "mi"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "flag": {"type": "boolean"},
        "day": {"type": "string", "format": "date"},
    },
    "required": ["name", "n"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"name": "abc", "n": 3}, []),
        ({"name": "abc", "n": 3.0, "x": None, "unit": "mi", "tags": ["a"], "flag": True, "day": "2024-01-31"}, []),
        ({"name": "abc"}, ["missing required argument 'n'"]),
        ({"name": "abc", "n": "3"}, ["argument 'n': expected integer, got str '3'"]),
        ({"name": "abc", "n": True}, ["argument 'n': expected integer, got bool True"]),
        ({"name": "abc", "n": 11}, ["argument 'n': 11 must be <= 10"]),
        ({"name": "abc", "n": 0}, ["argument 'n': 0 must be >= 1"]),
        ({"name": "a", "n": 1}, ["argument 'name': length 1 outside [2, 5]"]),
        ({"name": "ABC", "n": 1}, ["does not match the pattern"]),
        ({"name": "abc", "n": 1, "unit": "miles"}, ["argument 'unit': 'miles' is not one of ['km', 'mi']"]),
        ({"name": "abc", "n": 1, "tags": ["a", 2]}, ["argument 'tags'[1]: expected string, got int 2"]),
        ({"name": "abc", "n": 1, "flag": 1}, ["argument 'flag': expected boolean"]),
        ({"name": "abc", "n": 1, "x": "1.5"}, ["argument 'x': expected number or null"]),
        ({"name": "abc", "n": 1, "day": "tomorrow"}, ["'tomorrow' is not an ISO date"]),
        ({"name": "abc", "n": 1, "extra": 1}, ["unexpected argument 'extra'"]),
        ({"name": 5, "n": 20, "nope": 0}, ["argument 'name'", "argument 'n'", "unexpected argument 'nope'"]),
        ([1, 2], ["arguments: expected object, got list"]),
    ],
)
def test_validate_args(args: Any, expected: list[str]) -> None:
    errors = validate_args(SCHEMA, args)
    if not expected:
        assert errors == []
    else:
        assert len(errors) == len(expected), errors
        for want, got in zip(expected, errors, strict=True):
            assert want in got


def test_validate_args_enum_does_not_confuse_bool_and_int() -> None:
    schema = {"type": "object", "properties": {"v": {"enum": [1, 2]}}}
    assert validate_args(schema, {"v": 1}) == []
    assert validate_args(schema, {"v": True}) != []


# ---------------------------------------------------------------- the calculator
@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("17*23", 391),
        ("17 * 23 + 4", 395),
        ("(1200 - 350) / 5", 170),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2^10", 1024),
        ("sqrt(144) + 3.5 * 2", 19),
        ("round(pi, 2)", 3.14),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("floor(2.7) + ceil(2.1) + abs(-1)", 6),
        ("log(e)", 1),
        ("0.1 + 0.2", 0.3),
        ("10 ** 3", 1000),
    ],
)
def test_calculator(expression: str, value: float) -> None:
    result = call_tool(calculator, {"expression": expression})
    assert result.ok, result.error
    assert result.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('x')", "only the functions"),
        ("().__class__", "Attribute"),
        ("(1).__class__.__bases__", "Attribute"),
        ("9**9**9", "too large"),
        ("2 ** 5000", "too large"),
        ("10 ** 999 * 10 ** 999", "too large"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "only numbers"),
        ("open('/etc/passwd')", "only the functions"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("sqrt(x=4)", "positional arguments only"),
        ("1 / 0", "division by zero"),
        ("exp(1000)", "overflows"),
        ("(-8) ** 0.5", "no finite real value"),
        ("2 +", "cannot parse"),
        ("1" * 600, "at most 500"),
    ],
)
def test_calculator_rejects(expression: str, message: str) -> None:
    t = time.perf_counter()
    result = call_tool(calculator, {"expression": expression})
    assert time.perf_counter() - t < 2
    assert not result.ok and result.status == "error"
    assert result.error is not None and message in result.error and result.error.startswith("calculator raised")


def test_evaluate_returns_ints_for_integral_results() -> None:
    assert evaluate("sqrt(16)") == 4 and isinstance(evaluate("sqrt(16)"), int)
    assert evaluate("1/3") == pytest.approx(1 / 3)


# ---------------------------------------------------------------- date tools
def test_date_tools() -> None:
    assert call_tool(days_between, {"start": "2024-01-01", "end": "2024-03-01"}).value == 60
    assert call_tool(days_between, {"start": "2024-03-01", "end": "2024-01-01"}).value == -60
    assert call_tool(add_days, {"date": "2024-01-15", "days": 30}).value == "2024-02-14"
    assert call_tool(add_days, {"date": "2024-03-01", "days": -1}).value == "2024-02-29"
    assert call_tool(weekday, {"date": "2024-01-01"}).value == "Monday"
    now = call_tool(current_datetime, {"utc_offset": 5.5})
    assert now.ok and now.value.endswith("UTC+0530")
    expected = dt.datetime.now(dt.timezone(dt.timedelta(hours=5.5))).date().isoformat()
    assert now.value.startswith(expected) or now.value[:10] > expected  # midnight may pass mid-test
    assert call_tool(current_datetime, {}).value.endswith("UTC+0000")
    assert call_tool(current_datetime, {"utc_offset": 20}).status == "error"
    bad = call_tool(days_between, {"start": "2024-01-01", "end": "March 1"})
    assert bad.status == "invalid_arguments" and "argument 'end'" in str(bad.error)
    assert {t.name for t in BUILTIN_TOOLS} == {"calculator", "current_datetime", "days_between", "add_days", "weekday"}


# ---------------------------------------------------------------- HTTP tools against a real local server
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up (the timeout test)
            pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/echo"):
            args = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
            self._send(200, json.dumps({"method": "GET", "path": url.path, "args": args}).encode())
        elif url.path == "/text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif url.path == "/fail":
            self._send(500, b"internal trouble", "text/plain")
        elif url.path == "/big":
            self._send(200, b"x" * 1_100_000, "text/plain")
        elif url.path == "/slow":
            time.sleep(1.0)
            self._send(200, b"{}")
        else:
            self._send(404, b"no such page", "text/plain")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ctype = self.headers["Content-Type"]
        self._send(201, json.dumps({"method": "POST", "body": body, "content_type": ctype}).encode())


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


CITY = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}


def test_http_get_sends_query_string(server: str) -> None:
    t = http_tool("weather", "Weather in a city.", f"{server}/echo", CITY)
    assert not t.confirm  # GET has no side effects
    r = call_tool(t, {"city": "São Paulo", "days": 2})
    assert r.ok, r.error
    assert r.value == {"method": "GET", "path": "/echo", "args": {"city": "São Paulo", "days": "2"}}


def test_http_url_placeholders(server: str) -> None:
    t = http_tool("weather", "Weather in a city.", f"{server}/echo/{{city}}", CITY)
    assert call_tool(t, {"city": "New York", "days": 1}).value["path"] == "/echo/New%20York"


def test_http_post_sends_json_body_and_needs_confirmation(server: str) -> None:
    t = http_tool("order", "Place an order.", f"{server}/orders", CITY, method="POST")
    assert t.confirm  # POST has side effects unless told otherwise
    refused = call_tool(t, {"city": "Lisbon"})
    assert refused.status == "needs_confirmation" and "confirmation" in str(refused.error)
    r = call_tool(t, {"city": "Lisbon", "days": 3}, confirm=lambda tool, args: True)
    assert r.ok, r.error
    assert r.value == {"method": "POST", "body": {"city": "Lisbon", "days": 3}, "content_type": "application/json"}
    free = http_tool("order2", "Place an order.", f"{server}/orders", CITY, method="POST", confirm=False)
    assert call_tool(free, {"city": "Oslo"}).ok


def test_http_text_errors_and_limits(server: str) -> None:
    text = call_tool(http_tool("t", "Text.", f"{server}/text", CITY), {"city": "x"})
    assert text.ok and text.value == "plain words"
    fail = call_tool(http_tool("f", "Fails.", f"{server}/fail", CITY), {"city": "x"})
    assert fail.status == "error" and "HTTP 500" in str(fail.error) and "internal trouble" in str(fail.error)
    missing = call_tool(http_tool("m", "Missing.", f"{server}/nope", CITY), {"city": "x"})
    assert "HTTP 404" in str(missing.error)
    big = call_tool(http_tool("b", "Big.", f"{server}/big", CITY), {"city": "x"})
    assert big.status == "error" and "larger than" in str(big.error)
    slow = call_tool(http_tool("s", "Slow.", f"{server}/slow", CITY, timeout=0.2), {"city": "x"})
    assert slow.status in ("timeout", "error") and not slow.ok
    down = call_tool(http_tool("d", "Down.", "http://127.0.0.1:9/x", CITY, timeout=2), {"city": "x"})
    assert down.status == "error" and "request failed" in str(down.error)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "127.0.0.1:8000/x", "http://"])
def test_http_tool_rejects_non_http_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        http_tool("x", "X.", url, CITY)


# ---------------------------------------------------------------- calling: timeouts, errors, schema, confirmation
def _counted(name: str, description: str, confirm: bool = False) -> tuple[Tool, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def fn(count: int) -> str:
        calls.append({"count": count})
        return f"counted {count}"

    schema = {
        "type": "object",
        "properties": {"count": {"type": "integer", "minimum": 0, "description": "how many"}},
        "required": ["count"],
        "additionalProperties": False,
    }
    return Tool(name, description, schema, fn=fn, confirm=confirm), calls


def test_hanging_tool_times_out_quickly() -> None:
    release = threading.Event()
    hang = Tool("hang", "Never returns.", fn=lambda: release.wait(30), timeout=0.2)
    t = time.perf_counter()
    r = call_tool(hang, {})
    assert time.perf_counter() - t < 1.5
    assert r.status == "timeout" and not r.ok and "timed out after 0.2s" in str(r.error)
    release.set()


def test_raising_tool_becomes_an_error() -> None:
    def boom() -> None:
        raise RuntimeError("disk on fire")

    r = call_tool(Tool("boom", "Raises.", fn=boom), {})
    assert isinstance(r, ToolResult) and r.status == "error"
    assert r.error == "boom raised RuntimeError: disk on fire"


def test_arguments_failing_the_schema_are_not_called() -> None:
    t, calls = _counted("count", "Count things.")
    for bad in ({}, {"count": "three"}, {"count": -1}, {"count": 1, "other": 2}):
        r = call_tool(t, bad)
        assert r.status == "invalid_arguments" and "was not called" in str(r.error)
    assert calls == []
    assert call_tool(t, {"count": 3}).value == "counted 3" and calls == [{"count": 3}]


def test_confirmation_required_for_side_effects() -> None:
    t, calls = _counted("delete_things", "Delete things.", confirm=True)
    assert call_tool(t, {"count": 1}).status == "needs_confirmation"
    declined = call_tool(t, {"count": 1}, confirm=lambda tool, args: False)
    assert declined.status == "needs_confirmation" and "declined" in str(declined.error)
    assert calls == []
    asked: list[tuple[str, dict[str, Any]]] = []

    def approve(tool: Tool, args: dict[str, Any]) -> bool:
        asked.append((tool.name, args))
        return True

    assert call_tool(t, {"count": 2}, confirm=approve).ok
    assert calls == [{"count": 2}] and asked == [("delete_things", {"count": 2})]


def test_tool_without_implementation() -> None:
    r = call_tool(Tool("card_only", "Just a card."), {})
    assert r.status == "error" and "no implementation" in str(r.error)


# ---------------------------------------------------------------- selection and rule filling
def test_selection_bm25() -> None:
    r = ToolRetriever(BUILTIN_TOOLS, encoder=None)
    assert r.select("what is 17 times 23?")[0][0].name == "calculator"
    assert r.select("how many days between 2024-01-01 and 2024-03-01?")[0][0].name == "days_between"
    assert r.select("what day of the week was March 1, 2024?")[0][0].name == "weekday"
    assert r.select("who wrote Hamlet?") == []  # no shared word: nothing selected without an encoder
    assert len(r.select("days date", k=2)) == 2


@pytest.mark.model
def test_selection_hybrid_with_the_real_encoder(encoder: Any) -> None:
    r = ToolRetriever(BUILTIN_TOOLS, encoder=encoder)
    assert r.select("what is 17 times 23?")[0][0].name == "calculator"
    assert r.select("how many days between 2024-01-01 and 2024-03-01?")[0][0].name == "days_between"
    assert r.select("what time is it right now?")[0][0].name == "current_datetime"
    hits = r.retrieve("what is 17 times 23?")
    assert hits[0].doc.text == 'calculator(expression="17 * 23") returned 391'


def test_rule_fill() -> None:
    today = dt.date(2025, 6, 1)
    assert rule_fill(calculator, "what is 17 times 23?") == {"expression": "17 * 23"}
    assert rule_fill(calculator, "what is 15% of 80") == {"expression": "(15/100)* 80"}
    assert rule_fill(calculator, "square root of 144 plus 3") == {"expression": "sqrt(144) + 3"}
    assert rule_fill(calculator, "who wrote Hamlet?") == {}
    assert rule_fill(days_between, "days from March 1, 2024 to 4 July 2024?") == {
        "start": "2024-03-01",
        "end": "2024-07-04",
    }
    assert rule_fill(add_days, "what is 30 days after tomorrow?", today=today) == {"date": "2025-06-02", "days": 30}
    assert rule_fill(current_datetime, "what is 17 times 23?") == {}  # an optional number needs its name near
    assert rule_fill(current_datetime, "time now at UTC-5") == {"utc_offset": -5}
    units = {"enum": ["celsius", "fahrenheit", "kelvin"], "type": "string"}
    convert = Tool(
        "convert_temperature",
        "Convert a temperature.",
        {
            "type": "object",
            "properties": {"value": {"type": "number"}, "from_unit": units, "to_unit": units},
            "required": ["value", "from_unit", "to_unit"],
        },
    )
    assert rule_fill(convert, "convert 98.6 Fahrenheit to Celsius") == {
        "value": 98.6,
        "from_unit": "fahrenheit",
        "to_unit": "celsius",
    }
    assert rule_fill(convert, "how much is 300 kelvin in celsius?")["to_unit"] == "celsius"
    remind = Tool(
        "set_reminder",
        "Set a reminder.",
        {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "date": {"type": "string", "description": "Date in ISO format YYYY-MM-DD."},
                "time": {"type": "string", "description": "Clock time in 24-hour HH:MM format."},
                "to": {"type": "string", "description": "Recipient email address."},
            },
        },
    )
    assert rule_fill(remind, "Tell bob@example.com 'Bring the keys' on Oct 7 2025 at 8 pm") == {
        "message": "Bring the keys",
        "date": "2025-10-07",
        "time": "20:00",
        "to": "bob@example.com",
    }


def test_parse_date_and_coerce() -> None:
    assert parse_date("on 1st of March, 2024") == "2024-03-01"
    assert parse_date("2024/3/9") == "2024-03-09"
    assert parse_date("February 30, 2024") is None
    assert coerce("12", {"type": "integer"}) == 12
    assert coerce(12.0, {"type": "integer"}) == 12
    assert coerce("twelve", {"type": "integer"}) == "twelve"  # left for validation to reject
    assert coerce("1,250.5", {"type": "number"}) == 1250.5
    assert coerce("yes", {"type": "boolean"}) is True
    assert coerce(42, {"type": "string"}) == "42"
    assert coerce("Farenheit", {"enum": ["celsius", "fahrenheit"]}) == "fahrenheit"
    assert coerce("a, b", {"type": "array", "items": {"type": "string"}}) == ["a", "b"]
    assert coerce("[1, 2]", {"type": "array", "items": {"type": "integer"}}) == [1, 2]
    assert coerce("March 1, 2024", {"type": "string", "format": "date"}) == "2024-03-01"


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ('"Lisbon"', "Lisbon"),
        ('"Lisbon", "units": "celsius"}', "Lisbon"),
        ('{"city": "Lisbon", "units": "celsius"}', "Lisbon"),
        ('JSON:\n{\n  "city": "Lisbon",\n  "conditions', "Lisbon"),
        ("Answer: 42", 42),
        ("12}", 12),
        ('"a, b" and more', "a, b"),
        ("[1, 2], 3", [1, 2]),
        ("```json\n3.5\n```", 3.5),
        ("Lisbon\nbecause it is", "Lisbon"),
        ("null", None),
        ("", None),
        ('{"type": "json", "data": {', None),
    ],
)
def test_first_value(reply: str, value: Any) -> None:
    assert first_value(reply, "city") == value


# ---------------------------------------------------------------- the retriever
def test_retrieve_returns_citable_hits() -> None:
    r = ToolRetriever(BUILTIN_TOOLS, encoder=None)
    assert isinstance(r, Retriever)
    hits, events = r.retrieve_traced("how many days between 2024-01-01 and 2024-03-01?")
    top = hits[0]
    assert top.doc.text == 'days_between(start="2024-01-01", end="2024-03-01") returned 60'
    assert top.source == "tool"
    assert top.doc.meta == {
        "kind": "tool",
        "tool": "days_between",
        "arguments": {"start": "2024-01-01", "end": "2024-03-01"},
        "source": "tool:days_between",
    }
    assert top.doc.id.startswith("tool:days_between:")
    assert r.retrieve("how many days between 2024-01-01 and 2024-03-01?")[0].doc.id == top.doc.id  # stable
    assert [e["tool"] for e in events] == ["days_between"] and events[0]["status"] == "ok"  # k_tools=1
    assert {"tool", "score", "relevance", "arguments", "status", "error", "elapsed_ms"} <= set(events[0])
    events = ToolRetriever(BUILTIN_TOOLS, encoder=None, k_tools=3, margin=0).retrieve_traced(
        "how many days between 2024-01-01 and 2024-03-01?"
    )[1]
    add = next(e for e in events if e["tool"] == "add_days")
    assert add["status"] == "invalid_arguments" and "'days'" in add["error"]
    assert len(r.retrieve("how many days between 2024-01-01 and 2024-03-01?", k=1)) == 1
    only = r.retrieve("how many days between 2024-01-01 and 2024-03-01?", filters={"tool": "weekday"})
    assert [h.doc.meta["tool"] for h in only] == ["weekday"]
    with pytest.raises(ConfigError, match="filters"):
        r.retrieve("days", filters={"year": 2024})
    with pytest.raises(QueryError):
        r.retrieve("   ")
    with pytest.raises(ConfigError):
        r.retrieve("days", k=0)


def test_retriever_survives_hanging_and_raising_tools() -> None:
    release = threading.Event()
    schema = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}

    def boom(count: int) -> None:
        raise ValueError(f"cannot count {count}")

    tools = [
        Tool("count_sheep_slowly", "Count sheep, slowly.", schema, fn=lambda count: release.wait(30), timeout=0.2),
        Tool("count_sheep_badly", "Count sheep, badly.", schema, fn=boom),
        Tool("count_sheep", "Count sheep.", schema, fn=lambda count: f"{count} sheep"),
    ]
    r = ToolRetriever(tools, encoder=None, k_tools=3)  # close seconds: within the default margin, all called
    t = time.perf_counter()
    hits, events = r.retrieve_traced("count 12 sheep")
    assert time.perf_counter() - t < 2
    assert [h.doc.text for h in hits] == ["count_sheep(count=12) returned 12 sheep"]
    status = {e["tool"]: (e["status"], e["error"]) for e in events}
    assert status["count_sheep_slowly"][0] == "timeout" and "timed out after 0.2s" in status["count_sheep_slowly"][1]
    assert status["count_sheep_badly"] == ("error", "count_sheep_badly raised ValueError: cannot count 12")
    assert status["count_sheep"] == ("ok", None)
    release.set()


def test_only_the_best_tool_or_close_seconds_are_called() -> None:
    calls: list[str] = []

    def now(utc_offset: float = 0.0) -> str:
        calls.append("now")
        return "2025-06-01 12:00"

    clock = Tool(current_datetime.name, current_datetime.description, current_datetime.parameters, fn=now)
    tools = [calculator, clock, days_between, add_days, weekday]
    query = "what is 17 times 23?"  # "times" shares a stem with current_datetime's card: BM25 ranks it second
    hits, events = ToolRetriever(tools, encoder=None).retrieve_traced(query)  # k_tools=1 by default
    assert [h.doc.meta["tool"] for h in hits] == ["calculator"] and len(events) == 1 and calls == []
    hits, events = ToolRetriever(tools, encoder=None, k_tools=3).retrieve_traced(query)  # margin=0.8 by default
    assert [h.doc.meta["tool"] for h in hits] == ["calculator"] and calls == []
    second = events[1]
    assert second["tool"] == "current_datetime" and second["status"] == "skipped"
    assert "0.8 x the best's" in second["error"] and second["relevance"] < 0.8 * events[0]["relevance"]
    hits = ToolRetriever(tools, encoder=None, k_tools=2, margin=0).retrieve(query)
    assert [h.doc.meta["tool"] for h in hits] == ["calculator", "current_datetime"] and calls == ["now"]
    with pytest.raises(ConfigError, match="margin"):
        ToolRetriever(tools, encoder=None, margin=1.5)


def test_retriever_confirmation_and_min_score() -> None:
    t, calls = _counted("delete_items", "Delete items.", confirm=True)
    r = ToolRetriever([t], encoder=None)
    hits, events = r.retrieve_traced("delete 3 items")
    assert hits == [] and events[0]["status"] == "needs_confirmation" and calls == []
    r = ToolRetriever([t], encoder=None, confirm=lambda tool, args: args["count"] < 5)
    assert r.retrieve("delete 3 items")[0].doc.text == "delete_items(count=3) returned counted 3"
    assert r.retrieve("delete 7 items") == [] and calls == [{"count": 3}]
    strict = ToolRetriever([t], encoder=None, min_score=1.0)
    hits, events = strict.retrieve_traced("delete 3 items")
    assert hits == [] and events[0]["status"] == "skipped" and "min_score" in events[0]["error"]


def test_retriever_checks_its_settings() -> None:
    with pytest.raises(ConfigError, match="non-empty"):
        ToolRetriever([], encoder=None)
    with pytest.raises(ConfigError, match="unique"):
        ToolRetriever([calculator, calculator], encoder=None)
    with pytest.raises(ConfigError, match="encoder is None"):
        ToolRetriever(BUILTIN_TOOLS, encoder=None, weights=(0, 1))


# ---------------------------------------------------------------- LLM filling (scripted generator)
def _forecast_tool() -> tuple[Tool, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def fn(city: str, days: int = 3, units: str = "celsius") -> str:
        calls.append({"city": city, "days": days, "units": units})
        return f"{days} days of sun in {city}"

    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name."},
            "days": {"type": "integer", "minimum": 1, "maximum": 14, "description": "Days ahead."},
            "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    return Tool("weather_forecast", "Weather forecast for a city.", schema, fn=fn), calls


def test_llm_filling_is_schema_constrained() -> None:
    t, calls = _forecast_tool()
    gen = Scripted('"Paris", "days": 9}', '"5"', "Fahrenheit")  # a string needing coercion, an enum to snap
    r = ToolRetriever([t], encoder=None, generator=gen, llm_mode="llm")
    hits, events = r.retrieve_traced("forecast for Paris over the next five days in fahrenheit")
    assert events[0]["arguments"] == {"city": "Paris", "days": 5, "units": "fahrenheit"}
    assert calls == [{"city": "Paris", "days": 5, "units": "fahrenheit"}]
    call = 'weather_forecast(city="Paris", days=5, units="fahrenheit")'
    assert hits[0].doc.text == f"{call} returned 5 days of sun in Paris"
    prompts = [str(p) for p in gen.prompts]
    assert len(prompts) == 3
    assert prompts[0].endswith('{"city": ') and prompts[1].endswith('{"city": "Paris", "days": ')
    assert prompts[2].endswith('{"city": "Paris", "days": 5, "units": ')
    assert "forecast for Paris" in prompts[0] and "Weather forecast for a city." in prompts[0]
    assert 'one of ["celsius", "fahrenheit"]' in prompts[2]


def test_llm_invalid_value_means_no_call() -> None:
    t, calls = _forecast_tool()
    for mode, replies in [
        ("llm", ('"Paris"', '"lots"', "null")),  # "lots" is no integer; the optional units left out
        ("llm_first", ('"Paris"', '"lots"', "null")),  # the rule filler has no number to offer either
        ("rules_first", ('"lots"',)),  # the rules found the city; the LLM is asked for the days only
    ]:
        r = ToolRetriever([t], encoder=None, generator=Scripted(*replies), llm_mode=mode)
        hits, events = r.retrieve_traced("forecast for Paris for lots of days")
        assert hits == [] and calls == []
        assert events[0]["status"] == "invalid_arguments" and "argument 'days'" in events[0]["error"]
        assert events[0]["arguments"] == {"city": "Paris", "days": "lots"}
    out_of_range = ToolRetriever([t], encoder=None, generator=Scripted('"Paris"', "40", "null"), llm_mode="llm")
    assert out_of_range.retrieve_traced("forecast for Paris")[1][0]["status"] == "invalid_arguments"
    assert calls == []
    with pytest.raises(ConfigError, match="llm_mode"):
        ToolRetriever([t], encoder=None, llm_mode="both")


def test_llm_first_falls_back_to_the_rules() -> None:
    t, calls = _forecast_tool()
    gen = Scripted('"Lisbon"', "null", "null")  # invents a city, leaves out the required days
    r = ToolRetriever([t], encoder=None, generator=gen, llm_mode="llm_first")
    assert len(r.retrieve("forecast for Paris over the next 4 days")) == 1
    assert calls == [{"city": "Paris", "days": 4, "units": "celsius"}]
    gen = Scripted('"Paris"', "10", '"hot"')  # a number not in the query, an enum value snapped from nonsense
    r = ToolRetriever([t], encoder=None, generator=gen, llm_mode="llm_first")
    assert r.fill(t, "forecast for Paris over the next 4 days in fahrenheit") == {
        "city": "Paris",
        "days": 4,
        "units": "fahrenheit",
    }
    gen = Scripted('"Paris"', "4", '"Fahrenheit"')  # supported values stand
    r = ToolRetriever([t], encoder=None, generator=gen, llm_mode="llm_first")
    assert r.fill(t, "Paris, next four days in F") == {"city": "Paris", "days": 4, "units": "fahrenheit"}


def test_rules_first_asks_the_llm_for_missing_required_arguments_only() -> None:
    t, _ = _forecast_tool()
    gen = Scripted('"3"')
    r = ToolRetriever([t], encoder=None, generator=gen)  # llm_mode="rules_first" by default
    assert r.fill(t, "forecast for Paris for a few days") == {"city": "Paris", "days": 3}
    assert len(gen.prompts) == 1 and str(gen.prompts[0]).endswith('{"city": "Paris", "days": ')
    assert r.fill(t, "forecast for Paris for 5 days in fahrenheit") == {
        "city": "Paris",
        "days": 5,
        "units": "fahrenheit",
    }
    assert len(gen.prompts) == 1  # nothing left to ask


@pytest.mark.llm
@pytest.mark.slow
def test_llm_filling_with_the_shipped_llm() -> None:
    from rag.models.generate import LocalGenerator

    r = ToolRetriever(BUILTIN_TOOLS, encoder=None, generator=LocalGenerator(max_new_tokens=16, threads=1))
    hits, events = r.retrieve_traced("how many days between 2024-01-01 and 2024-03-01?")
    assert events and all(e["status"] in ("ok", "invalid_arguments", "error") for e in events)
    assert all(h.doc.meta["kind"] == "tool" for h in hits)
