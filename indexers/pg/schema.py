"""The PostgreSQL store's URL, connections and versioned schema (see :mod:`rag.indexers.pg.collection`).

A collection lives in its own PostgreSQL schema, named by the URL's ``collection`` parameter
(``postgresql://user@host:5432/db?collection=handbook``; default ``pilotfish``), so one database holds several.
The parameter is removed before the URL reaches libpq; every other parameter (``sslmode``, ``host=/socket/dir``,
``options``...) passes through.

Tables (all in that schema): ``settings`` (chunking, BM25 and index parameters, the encoder), ``state`` (the
generation: one row, bumped by each write), ``documents``, ``chunks`` (text, JSONB metadata and the
``vector(dim)`` embedding), ``changes`` (the change log: which chunk ordinals each generation added or removed;
BM25 in each application process follows it), ``fields`` (metadata keys, for filter validation) and
``schema_migrations`` (applied versions). Migrations run in order, once, under an advisory lock, when a process
opens the collection for writing; a read-only process (e.g. on a read replica) never changes the schema, and a
schema newer than this code is refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rag.errors import ConfigError, IndexFormatError, MissingDependencyError, StoreUnavailableError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NAME = "pilotfish"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def parse_url(url: str) -> tuple[str, str]:
    """``(dsn for libpq, collection name)`` from a store URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [v for k, v in query if k == "collection"]
    name = names[-1] if names else DEFAULT_NAME
    if not _NAME.match(name):
        raise ConfigError(
            f"collection name {name!r} in {redact(url)} is not usable as a PostgreSQL schema name; "
            "use lower-case letters, digits and underscores (e.g. ?collection=handbook)"
        )
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "collection"])))
    return dsn, name


def redact(url: str) -> str:
    """The URL without its password: ``postgresql://user:secret@host/db`` → ``postgresql://user@host/db``."""
    return re.sub(r"^(postgres(?:ql)?://[^:@/]*):[^@/]*@", r"\1@", url)


def connect(dsn: str) -> Any:
    """An autocommit connection with the ``vector`` type registered (when the extension exists)."""
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("psycopg", extra="pg", purpose="the PostgreSQL store") from e
    try:
        con = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {str(e).strip()}. Check that the server is running "
            "and that the URL (host, port, user, database) is right"
        ) from e
    register_vector(con)
    return con


def register_vector(con: Any) -> None:
    try:
        from pgvector.psycopg import register_vector as reg
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("pgvector", extra="pg", purpose="the PostgreSQL store") from e
    if con.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'").fetchone():
        reg(con)


def store_errors(fn: F) -> F:
    """A lost connection becomes :class:`StoreUnavailableError` (the next call reconnects)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        import psycopg

        try:
            return fn(self, *args, **kwargs)
        except psycopg.OperationalError as e:
            raise StoreUnavailableError(
                f"lost the connection to {self.location} ({str(e).strip()}); the next call reconnects"
            ) from e

    return cast(F, wrapper)


def _v1(s: str, dim: int | None) -> list[str]:
    vec = f", embedding vector({dim})" if dim else ""
    return [
        f"CREATE TABLE {s}.settings (key text PRIMARY KEY, value jsonb NOT NULL)",
        f"CREATE TABLE {s}.state (one boolean PRIMARY KEY DEFAULT true CHECK (one), generation bigint NOT NULL)",
        f"INSERT INTO {s}.state (generation) VALUES (0)",
        f"CREATE TABLE {s}.documents (id text PRIMARY KEY, hash text NOT NULL, meta jsonb NOT NULL, "
        "n_chunks integer NOT NULL, generation bigint NOT NULL)",
        f"CREATE SEQUENCE {s}.chunk_ord",
        f"CREATE TABLE {s}.chunks (ord bigint PRIMARY KEY, id text NOT NULL, "
        f"parent text NOT NULL REFERENCES {s}.documents (id) ON DELETE CASCADE, text text NOT NULL, "
        f"meta jsonb NOT NULL, generation bigint NOT NULL{vec})",
        f"CREATE INDEX chunks_parent ON {s}.chunks (parent)",
        f"CREATE TABLE {s}.changes (generation bigint NOT NULL, ord bigint NOT NULL, "
        "op char(1) NOT NULL CHECK (op IN ('a', 'd')))",
        f"CREATE INDEX changes_generation ON {s}.changes (generation)",
    ]


def _v2(s: str, dim: int | None) -> list[str]:
    return [f"CREATE TABLE {s}.fields (name text PRIMARY KEY)"]


def _v3(s: str, dim: int | None) -> list[str]:
    return [f"ALTER TABLE {s}.state ADD COLUMN log_from bigint NOT NULL DEFAULT 0"]


# (version, what it does, statements for schema s and embedding dimension dim). Append only; never edit a step.
MIGRATIONS: list[tuple[int, str, Callable[[str, int | None], list[str]]]] = [
    (1, "settings, state, documents, chunks with embeddings, change log", _v1),
    (2, "metadata field names, for filter validation", _v2),
    (3, "state.log_from: where the (pruned) change log starts", _v3),
]


def schema_version(con: Any, schema: str) -> int | None:
    """The highest applied migration, or None when the collection's schema does not exist."""
    if not con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone():
        return None
    if not con.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_migrations'", [schema]
    ).fetchone():
        raise IndexFormatError(
            f"schema {schema!r} exists but holds no pilotfish collection (no schema_migrations table); "
            "choose another name with ?collection=NAME"
        )
    row = con.execute(f"SELECT max(version) FROM {schema}.schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: Any, schema: str, dim: int | None, *, create: bool) -> int:
    """Apply the pending migrations (creating the schema when ``create``), each in its own transaction under an
    advisory lock, so concurrent processes apply each once. Returns the schema version."""
    latest = MIGRATIONS[-1][0]
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext('pilotfish.migrate.' || %s))", [schema])
        version = schema_version(con, schema)
        if version is None:
            if not create:
                raise ConfigError(f"no pilotfish collection {schema!r} in this database; create it first")
            _ensure_vector(con, dim)
            con.execute(f"CREATE SCHEMA {schema}")
            con.execute(
                f"CREATE TABLE {schema}.schema_migrations (version integer PRIMARY KEY, description text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = 0
        check_version(version, schema)
        for v, description, steps in MIGRATIONS:
            if v > version:
                for sql in steps(schema, dim):
                    con.execute(sql)
                con.execute(
                    f"INSERT INTO {schema}.schema_migrations (version, description) VALUES (%s, %s)", [v, description]
                )
    register_vector(con)
    return latest


def check_version(version: int, schema: str) -> None:
    latest = MIGRATIONS[-1][0]
    if version > latest:
        raise IndexFormatError(
            f"collection {schema!r} has schema version {version}, newer than this pilotfish knows ({latest}); "
            "upgrade pilotfish to open it"
        )


def _ensure_vector(con: Any, dim: int | None) -> None:
    if dim is None:
        return
    import psycopg

    try:
        con.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as e:
        raise StoreUnavailableError(
            f"the pgvector extension is not available in this database ({str(e).strip()}); install pgvector on "
            "the server and run CREATE EXTENSION vector as a superuser, or create a BM25-only collection "
            "(encoder=None)"
        ) from e


def manifest(con: Any, schema: str, location: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL collection's settings, generation and counts, shaped like a directory collection's manifest."""
    gen, docs, chunks = con.execute(
        f"SELECT (SELECT generation FROM {schema}.state), (SELECT count(*) FROM {schema}.documents), "
        f"(SELECT count(*) FROM {schema}.chunks)"
    ).fetchone()
    s = settings
    return {
        "type": "pilotfish-postgres",
        "store": location,
        "schema": schema,
        "schema_version": MIGRATIONS[-1][0],
        "generation": int(gen),
        "params": {"chunk": s["chunk"], "params": s["params"], "tokenizer": s["tokenizer"], "dense": s["dense"]},
        "encoder": s["encoder"],
        "counts": {"documents": int(docs), "chunks": int(chunks)},
        "pilotfish_version": s.get("pilotfish_version"),
    }
