"""Table operations by rules: questions parsed into operations, their SQL validated and run in DuckDB, the table
retriever answering with them before (or instead of) the LLM, and attacks riding in the question."""

from __future__ import annotations

import duckdb
import pytest

from rag.indexers.collection import Collection
from rag.indexers.tables import SCHEMA, add_tables, table_cards
from rag.retrievers.sql_guard import validate_sql
from rag.retrievers.table import TableRetriever
from rag.retrievers.table_match import number
from rag.retrievers.table_ops import Operation, parse
from tests.retrievers.test_tables import ATTACKS, STAFF
from tests.support.fakes import Scripted

ALBUMS = (
    ["Year", "Album", "Label", "Sales"],
    [
        ("1969", "First Light", "Apple", "1,200"),
        ("1971", "Second Wind", "Apple", "3,400 (est.)"),
        ("1973", "Third Eye", "Harvest", "900"),
        ("1974", "Fourth Wall", "Apple", "5,000"),
        ("1979", "Fifth Gear", "Harvest", "2,100"),
    ],
)


def run(question: str) -> tuple[Operation | None, list[str]]:
    labels, rows = ALBUMS
    op = parse(question, labels, rows)
    if op is None:
        return None, []
    con = duckdb.connect()
    con.execute("CREATE TABLE albums (" + ", ".join(f'"{c}" VARCHAR' for c in labels) + ")")
    con.executemany("INSERT INTO albums VALUES (?, ?, ?, ?)", rows)
    out = con.execute(validate_sql(op.sql("albums"), {"albums"})).fetchall()
    return op, [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for r in out for v in r]


@pytest.mark.parametrize(
    ("question", "kind", "answer"),
    [
        ("How many albums were released before 1975?", "count", ["4"]),
        ("how many albums came out after 1972 on Apple?", "count", ["1"]),
        ("What were the total sales of Apple albums?", "sum", ["9600"]),
        ("What is the average sales?", "avg", ["2520"]),
        ("Which album had the most sales?", "argmax", ["Fourth Wall"]),
        ("Which album had the fewest sales?", "argmin", ["Third Eye"]),
        ("What was the first album?", "first", ["First Light"]),
        ("What was the last album?", "last", ["Fifth Gear"]),
        ("Which label put out the most albums?", "argmax", ["Apple"]),
        ("Which sold more, Third Eye or Fifth Gear?", "compare", ["Fifth Gear"]),
        ("How many more sales did Fourth Wall have than First Light?", "difference", ["3800"]),
        ("What label released Third Eye?", "lookup", ["Harvest"]),
        ("How many albums were released between 1970 and 1975?", "count", ["3"]),
    ],
)
def test_questions_become_operations_with_the_right_answer(question: str, kind: str, answer: list[str]) -> None:
    op, cells = run(question)
    assert op is not None and op.kind == kind and cells == answer, op


def test_questions_no_rule_fits_are_left_to_the_llm() -> None:
    assert run("Tell me something nice about music.")[0] is None
    assert parse("How many albums?", [], []) is None
    assert number("1,234 (est.)") == 1234.0 and number("n/a") is None and number("-3.5 m") == -3.5


@pytest.fixture
def staff_kb(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "staff.csv").write_text(STAFF)
    kb = Collection.create(tmp_path / "kb", encoder=None)
    add_tables(kb, sorted(d.iterdir()), root=d)
    yield kb
    kb.close()


def test_the_retriever_answers_by_rules_first_and_the_llm_only_when_they_fail(staff_kb) -> None:
    t = table_cards(staff_kb)["staff.csv"]["table"]
    llm = Scripted(f"SELECT count(*) FROM {t}")
    hits, events = TableRetriever(staff_kb, mode="sql", generator=llm).retrieve_traced("how many staff are in Lisbon?")
    assert hits[0].doc.text.splitlines()[-1] == "2" and hits[0].doc.meta["kind"] == "sql"
    assert events[1]["step"] == "rules" and events[1]["operation"] == "count" and llm.prompts == []
    hits, events = TableRetriever(staff_kb, mode="sql", generator=llm).retrieve_traced("tell me about the staff")
    assert [e["step"] for e in events[1:]] == ["sql"] and len(llm.prompts) == 1  # no rule: the LLM writes it
    alone = TableRetriever(staff_kb, mode="sql")  # no LLM: rules alone
    assert alone.retrieve("which name has the highest salary?")[0].doc.text.splitlines()[-1] == "Cai"
    assert alone.retrieve("tell me about the staff") == []


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_in_the_question_stay_quoted_values(tmp_path, staff_kb, attack: str) -> None:
    t = table_cards(staff_kb)["staff.csv"]["table"]
    leak = tmp_path / "leak.csv"
    question = f"how many staff are in Lisbon or {attack.format(t=t, leak=leak)}?"
    _, events = TableRetriever(staff_kb, mode="sql").retrieve_traced(question)
    assert events[1]["step"] == "rules" and "DROP" not in events[1]["sql"].split("'")[0]  # never outside a literal
    assert staff_kb.store.con.execute(f"SELECT count(*) FROM {SCHEMA}.{t}").fetchone() == (4,)
    assert not leak.exists() and len(table_cards(staff_kb)) == 1
