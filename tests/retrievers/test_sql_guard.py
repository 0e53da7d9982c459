"""The SQL validator against an attack list, and the bounded runner."""

from __future__ import annotations

import duckdb
import pytest

from rag.errors import UnsafeQueryError
from rag.retrievers.sql_guard import validate_sql
from rag.retrievers.table_sql import run_sql

ALLOWED = {"staff"}

SAFE = [
    "SELECT count(*) FROM staff WHERE city = 'Lisbon'",
    "select name from tbl.staff order by salary desc limit 1;",
    "WITH big AS (SELECT * FROM staff WHERE salary > 10) SELECT count(*) FROM big",
    "SELECT city, sum(salary) AS total FROM staff GROUP BY city HAVING sum(salary) > 1 ORDER BY total DESC",
    "SELECT name FROM staff WHERE salary = (SELECT max(salary) FROM staff)",
    "SELECT a.name FROM staff a JOIN staff b ON a.city = b.city WHERE a.name <> b.name",
    "SELECT name, rank() OVER (ORDER BY salary DESC) FROM staff",
    "SELECT '--' AS dashes, 'x; DROP TABLE staff' AS text FROM staff",  # inside literals: data, not SQL
    "SELECT * FROM staff UNION ALL SELECT * FROM staff",
    "WITH a AS (SELECT * FROM staff), b AS (SELECT * FROM a WHERE salary > 1) SELECT count(*) FROM b",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 12) SELECT n FROM r",
    "SELECT printf('%.2f', avg(salary)), format('{:.1f}%', 12.5), lpad(name, 8, '.') FROM staff GROUP BY name",
    "SELECT repeat('-', 20), unnest(range(1, 13)) AS month, to_base(salary, 2) FROM staff",
]

ATTACKS = [
    ("DROP TABLE staff", "not DROP"),
    ("SELECT 1; DROP TABLE staff", "exactly one statement"),
    ("SELECT * FROM staff; SELECT * FROM documents", "exactly one statement"),
    ("SELECT * FROM staff -- ignore the rest", "comments"),
    ("SELECT * FROM staff /* hidden */ WHERE 1=1", "comments"),
    ("ATTACH '/tmp/other.db' AS other", "not ATTACH"),
    ("COPY staff TO '/tmp/leak.csv'", "not COPY"),
    ("PRAGMA database_list", "not PRAGMA"),
    ("SET enable_external_access = true", "not SET"),
    ("INSERT INTO staff VALUES ('x', 'y', 1)", "not INSERT"),
    ("UPDATE staff SET salary = 0", "not UPDATE"),
    ("DELETE FROM staff", "not DELETE"),
    ("CREATE TABLE x AS SELECT * FROM staff", "not CREATE"),
    ("INSTALL httpfs", "not"),
    ("LOAD httpfs", "not"),
    ("CALL pragma_version()", "not CALL"),
    ("EXPORT DATABASE '/tmp/dump'", "not EXPORT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM '/etc/passwd'", "not one of the allowed tables"),
    ("SELECT * FROM glob('/home/*')", "glob"),
    ("SELECT * FROM duckdb_tables()", "duckdb_tables"),
    ("SELECT * FROM staff, (SELECT * FROM read_parquet('x.parquet')) p", "read_parquet"),
    ("SELECT getenv('HOME')", "getenv"),
    ("SELECT * FROM documents", "not one of the allowed tables"),
    ("SELECT (SELECT count(*) FROM chunks) FROM staff", "not one of the allowed tables"),
    ("SELECT * FROM main.staff", "not one of the allowed tables"),
    ("SELECT * FROM other.tbl.staff", "not one of the allowed tables"),
    ("DESCRIBE staff", "show ref"),
    ("SHOW TABLES", "show ref"),
    ("SUMMARIZE staff", "show ref"),
    ("PIVOT staff ON city USING sum(salary)", "not MULTI"),
    ("SELECT * FROM staff WHERE name = 'x' OR 1=1; DROP TABLE staff; --'", "comments"),
    ("", "empty"),
    ("SELEC * FROM staff", "does not parse"),
    ("SELECT " + "1+" * 3000 + "1", "characters long"),
    ("WITH documents AS (SELECT * FROM documents) SELECT * FROM documents", "documents"),  # a CTE named like a table
    ("SELECT * FROM (WITH chunks AS (SELECT 1) SELECT * FROM chunks), chunks", "chunks"),  # out of the CTE's scope
    ("SELECT getvariable('secret')", "getvariable"),
    ("SELECT nextval('seq')", "nextval"),
    ("SELECT pg_get_viewdef(1)", "pg_get_viewdef"),  # a built-in macro that queries the catalog
    ("SELECT length(repeat('x', 100000000))", "repeat"),  # one uninterruptible call: capped, not timed out
    ("SELECT repeat(name, 3) FROM staff", "literal"),
    ("SELECT len(range(1000000000))", "range"),
    ("SELECT printf('%0900000000d', 1)", "printf"),
    ("SELECT format('{:>{}}', 'x', 900000000)", "format"),
]


@pytest.mark.parametrize("sql", SAFE)
def test_safe_queries_pass(sql):
    assert validate_sql(sql, ALLOWED) == sql.strip().rstrip(";").strip()


@pytest.mark.parametrize("sql,why", ATTACKS)
def test_attacks_are_rejected_with_the_reason(sql, why):
    with pytest.raises(UnsafeQueryError, match=why):
        validate_sql(sql, ALLOWED)


def test_a_cte_cannot_smuggle_a_table_in():
    with pytest.raises(UnsafeQueryError, match="documents"):
        validate_sql("WITH x AS (SELECT * FROM documents) SELECT * FROM x", ALLOWED)


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE SCHEMA tbl")
    c.execute("CREATE TABLE tbl.staff AS SELECT 'p' || i AS name, i % 3 AS city, i AS salary FROM range(5000) t(i)")
    yield c
    c.close()


def test_run_enforces_the_row_limit(con):
    res = run_sql(con, validate_sql("SELECT * FROM staff", ALLOWED), limit=7)
    assert len(res.rows) == 7 and res.truncated and res.columns == ["name", "city", "salary"]
    res = run_sql(con, validate_sql("SELECT sum(salary) FROM staff", ALLOWED), limit=7)
    assert res.rows == [(sum(range(5000)),)] and not res.truncated


def test_a_slow_query_is_interrupted(con):
    slow = validate_sql("SELECT sum(a.salary * b.salary * c.salary) FROM staff a, staff b, staff c", ALLOWED)
    with pytest.raises(UnsafeQueryError, match=r"ran over 0\.2s"):
        run_sql(con, slow, timeout=0.2)
    assert con.execute("SELECT count(*) FROM tbl.staff").fetchone() == (5000,)  # the connection still works
