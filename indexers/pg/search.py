"""The reads of a PostgreSQL collection: documents, ids, fields, filters as SQL, hits, and dense search with
pgvector. :class:`~rag.indexers.pg.collection.PgCollection` inherits them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.indexers.dense import DenseParams
from rag.indexers.filters import to_sql
from rag.indexers.pg import index as pg_index
from rag.indexers.pg import schema as pg_schema
from rag.types import Doc, Hit


class PgSearch:
    """Reads over the collection's schema ``name``, through this thread's connection (:meth:`con`)."""

    name: str
    location: str
    dense_params: DenseParams
    exact: bool
    _fields: tuple[int, set[str]] | None

    @property
    def has_dense(self) -> bool:
        raise NotImplementedError

    def con(self) -> Any:
        raise NotImplementedError

    def db_generation(self) -> int:
        raise NotImplementedError

    @pg_schema.store_errors
    def get(self, ids: Sequence[str]) -> list[Doc]:
        rows = self.con().execute(
            f"SELECT id, text, meta FROM {self.name}.chunks WHERE parent = ANY(%s) ORDER BY parent, ord", [list(ids)]
        )
        return [Doc(text=t, id=i, meta=m) for i, t, m in rows.fetchall()]

    @pg_schema.store_errors
    def ids(self) -> list[str]:
        return [r[0] for r in self.con().execute(f"SELECT id FROM {self.name}.documents ORDER BY id").fetchall()]

    @pg_schema.store_errors
    def hashes(self) -> dict[str, str]:
        return dict(self.con().execute(f"SELECT id, hash FROM {self.name}.documents").fetchall())

    @pg_schema.store_errors
    def fields(self) -> set[str]:
        gen = self.db_generation()
        if self._fields is None or self._fields[0] != gen:
            rows = self.con().execute(f"SELECT name FROM {self.name}.fields").fetchall()
            self._fields = (gen, {r[0] for r in rows})
        return set(self._fields[1])

    def where(self, filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        """The SQL condition (over ``meta``) and parameters of ``filters``."""
        return to_sql(filters, self.fields() if filters else (), dialect="postgres")

    @pg_schema.store_errors
    def allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        if not filters:
            return None
        where, params = self.where(filters)
        rows = self.con().execute(f"SELECT ord FROM {self.name}.chunks WHERE {where} ORDER BY ord", params).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    @pg_schema.store_errors
    def hits(self, ords: np.ndarray, scores: np.ndarray, source: str) -> list[Hit]:
        keep = [(int(o), float(s)) for o, s in zip(ords, scores, strict=True) if o >= 0]
        rows = (
            self.con()
            .execute(f"SELECT ord, id, text, meta FROM {self.name}.chunks WHERE ord = ANY(%s)", [[o for o, _ in keep]])
            .fetchall()
        )
        docs = {o: Doc(text=t, id=i, meta=m) for o, i, t, m in rows}
        return [Hit(doc=docs[o], score=s, source=source) for o, s in keep if o in docs]

    @pg_schema.store_errors
    def dense_hits(self, query_vec: np.ndarray, k: int, filters: Mapping[str, Any] | None) -> list[Hit]:
        if not self.has_dense:
            raise ConfigError(f"collection {self.location} has no dense index (created with encoder=None)")
        where, params = self.where(filters)
        rows = pg_index.nearest(self.con(), self.name, self.dense_params, query_vec, k, where, params, self.exact)
        return [Hit(doc=Doc(text=t, id=i, meta=m), score=1.0 - float(d), source="dense") for _o, i, t, m, d in rows]
