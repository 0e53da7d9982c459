"""The BM25 engine: an inverted index with exact incremental add/delete and no pickle.

Postings are stored term-major (``term_ptr``, ``post_slot``, ``post_tf``); each document occupies a
*slot* and carries an external integer id (``ord``, the chunk ordinal of the document store).
Per-posting scores are derived from the term frequencies and the corpus statistics (N, avgdl, df)
lazily, after any change, so an index built incrementally scores exactly like one built at once.

Variants:
    * ``lucene`` (default): idf = ln(1 + (N - df + .5) / (df + .5)), tf part tf / (tf + k1 * norm).
    * ``okapi``: the formula of rank-bm25's ``BM25Okapi`` (idf = ln((N - df + .5) / (df + .5)), negative
      idf floored at ``epsilon`` x mean idf, tf part tf * (k1 + 1) / (tf + k1 * norm)); scores equal
      rank-bm25's.

The module is longer than most (~370 lines) on purpose: it is one data structure, the postings arrays, and every
operation that must keep their invariants (slots, ids, term statistics, lazy scores); split over files, those
invariants would be too.

Example:
    >>> idx = BM25Index()
    >>> idx.add([0, 1], ["keys rotate every day", "tea is served at noon"])
    >>> idx.search(["rotate keys"], k=1)[0][0].tolist()
    [0]
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexFormatError
from rag.retrievers import bm25_kernels
from rag.text.tokenizer import Tokenizer

_TF_MAX = np.iinfo(np.uint16).max
_BATCH = 20_000  # texts tokenised per pass
_SEP = "zzpilotfishdocumentseparatorzz"


@dataclass(frozen=True)
class BM25Params:
    """BM25 parameters: ``method`` (lucene | okapi), ``k1``, ``b``, ``epsilon`` (okapi's idf floor)."""

    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.method not in ("lucene", "okapi"):
            raise ConfigError(f"unknown BM25 method {self.method!r}; use 'lucene' or 'okapi'")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1; got k1={self.k1}, b={self.b}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"BM25 dtype must be float32 or float64, got {self.dtype!r}")


class BM25Index:
    """An incremental BM25 index over integer document ids (``ords``)."""

    def __init__(self, params: BM25Params | None = None, tokenizer: Tokenizer | None = None) -> None:
        self.params = params or BM25Params()
        self.tokenizer = tokenizer or Tokenizer()
        self.terms: list[str] = []
        self.vocab: dict[str, int] = {}
        self.term_ptr = np.zeros(1, dtype=np.int64)
        self.post_slot = np.zeros(0, dtype=np.int32)
        self.post_tf = np.zeros(0, dtype=np.uint16)
        self.doc_len = np.zeros(0, dtype=np.int32)
        self.slot_ord = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self._scores: np.ndarray | None = None  # derived per-posting scores
        self._word_cache: dict[str, int] = {}  # raw word -> term id (-1 dropped), not persisted

    # ------------------------------------------------------------------ stats
    def __len__(self) -> int:
        return int(self.alive.sum())

    @property
    def ords(self) -> np.ndarray:
        """The ids of the live documents, ascending."""
        return self.slot_ord[self.alive]

    def _stats(self) -> tuple[int, float, np.ndarray]:
        n = len(self)
        avgdl = float(self.doc_len[self.alive].sum()) / n if n else 0.0
        df = np.diff(self.term_ptr)
        return n, avgdl, df

    def idf(self) -> np.ndarray:
        """Inverse document frequency of every term id, for the configured method."""
        n, _, df = self._stats()
        dff = df.astype(np.float64)
        if self.params.method == "lucene":
            return np.log(1.0 + (n - dff + 0.5) / (dff + 0.5))
        idf = np.zeros(len(df))
        present = df > 0
        idf[present] = np.log(n - dff[present] + 0.5) - np.log(dff[present] + 0.5)
        if present.any():
            floor = self.params.epsilon * idf[present].sum() / present.sum()
            idf[present & (idf < 0)] = floor
        return idf

    def _posting_scores(self) -> np.ndarray:
        if self._scores is None:
            p = self.params
            _n, avgdl, df = self._stats()
            idf = np.repeat(self.idf(), df)
            tf = self.post_tf.astype(np.float64)
            norm = 1.0 - p.b + p.b * self.doc_len[self.post_slot] / (avgdl or 1.0)
            if p.method == "lucene":
                s = idf * tf / (tf + p.k1 * norm)
            else:
                s = idf * tf * (p.k1 + 1.0) / (tf + p.k1 * norm)
            self._scores = s.astype(p.dtype)
        return self._scores

    # ------------------------------------------------------------------ writes
    def add(self, ords: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Index ``texts`` under ``ords``; ords must be new and larger than every id already added."""
        ords_a = self._check_new(ords, len(texts))
        batches = []
        for lo in range(0, len(texts), _BATCH):
            batch = texts[lo : lo + _BATCH]
            ids, lens = self._word_ids(batch)
            batches.append(self._postings(ids, lens, len(self.slot_ord) + lo))
        self._append(ords_a, batches)

    def add_tokens(self, ords: Sequence[int] | np.ndarray, tokens: Sequence[Sequence[str]]) -> None:
        """Index pre-tokenised documents (lists of terms, taken as they are)."""
        ords_a = self._check_new(ords, len(tokens))
        self._append(ords_a, [self._postings(*self._token_ids(tokens), len(self.slot_ord))])

    def _token_ids(self, tokens: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Term ids of token lists (flattened; new terms join the vocabulary) and their lengths."""
        lens = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        flat = [w for toks in tokens for w in toks]
        return np.fromiter(map(self._term_id, flat), dtype=np.int64, count=len(flat)), lens

    def _check_new(self, ords: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
        ords_a = np.asarray(ords, dtype=np.int64)
        if len(ords_a) != n:
            raise ConfigError(f"got {len(ords_a)} ids for {n} texts; pass one id per text")
        if np.any(np.diff(ords_a) <= 0) or (len(ords_a) and len(self.slot_ord) and ords_a[0] <= self.slot_ord[-1]):
            raise ConfigError("BM25 ids must be increasing and larger than every id already indexed")
        return ords_a

    def _term_id(self, term: str) -> int:
        i = self.vocab.get(term)
        if i is None:
            i = self.vocab[term] = len(self.terms)
            self.terms.append(term)
        return i

    def _word_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Term ids of a batch's words (flattened) and the number of terms per text.

        The batch is joined with a separator word and split in one regex pass; each distinct word
        is normalised (stop words, stemming) once and cached as a term id (-1: dropped)."""
        words = self.tokenizer.words(f" {_SEP} ".join(texts))
        if words.count(_SEP) != len(texts) - 1:  # a text contains the separator word: go one by one
            return self._token_ids(self.tokenizer.tokenize(texts))
        cache = self._word_cache
        if len(cache) > 5_000_000:
            cache.clear()
        cache[_SEP] = -2
        new = set(words).difference(cache)
        if new:
            for w, t in self.tokenizer.terms(new).items():
                cache[w] = -1 if t is None else self._term_id(t)
        ids = np.fromiter(map(cache.__getitem__, words), dtype=np.int64, count=len(words))
        doc = np.cumsum(ids == -2)
        keep = ids >= 0
        return ids[keep], np.bincount(doc[keep], minlength=len(texts))

    def _postings(self, ids: np.ndarray, lens: np.ndarray, first_slot: int) -> tuple[np.ndarray, ...]:
        """(term, slot, tf) of a batch, sorted by term then slot, and the batch's doc lengths."""
        n = len(lens)
        docs = np.repeat(np.arange(n, dtype=np.int64), lens)
        key, tf = np.unique(ids * n + docs, return_counts=True)
        term, local = np.divmod(key, n) if n else (key, key)
        return (
            term.astype(np.int32),
            (local + first_slot).astype(np.int32),
            np.minimum(tf, _TF_MAX).astype(np.uint16),
            lens,
        )

    def _append(self, ords: np.ndarray, batches: list[tuple[np.ndarray, ...]]) -> None:
        if len(ords) == 0:
            return
        term, slot, tf, lens = (np.concatenate([b[i] for b in batches]) for i in range(4))
        if len(batches) > 1:  # each batch is term-sorted; a stable sort keeps slots ascending per term
            order = np.argsort(term, kind="stable")
            term, slot, tf = term[order], slot[order], tf[order]
        self._merge(term, slot, tf, len(self.terms))
        self.doc_len = np.concatenate([self.doc_len, lens.astype(np.int32)])
        self.slot_ord = np.concatenate([self.slot_ord, ords])
        self.alive = np.concatenate([self.alive, np.ones(len(ords), dtype=bool)])
        self._scores = None

    def _merge(self, new_term: np.ndarray, new_slot: np.ndarray, new_tf: np.ndarray, n_terms: int) -> None:
        """Merge term-sorted new postings (slots above all existing) into the term-major arrays."""
        if len(self.post_slot) == 0:  # first batch: the new postings are the index
            self.term_ptr = np.zeros(n_terms + 1, dtype=np.int64)
            np.cumsum(np.bincount(new_term, minlength=n_terms), out=self.term_ptr[1:])
            self.post_slot, self.post_tf = new_slot, new_tf
            return
        old_ptr = np.concatenate([self.term_ptr, np.full(n_terms + 1 - len(self.term_ptr), self.term_ptr[-1])])
        old_cnt = np.diff(old_ptr)
        new_cnt = np.bincount(new_term, minlength=n_terms)
        ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(old_cnt + new_cnt, out=ptr[1:])
        total = int(ptr[-1])
        slot = np.empty(total, dtype=np.int32)
        tf = np.empty(total, dtype=np.uint16)
        # old postings of term t move to ptr[t] + i; new ones follow them
        dest_old = np.arange(len(self.post_slot), dtype=np.int64) + np.repeat(ptr[:-1] - old_ptr[:-1], old_cnt)
        slot[dest_old], tf[dest_old] = self.post_slot, self.post_tf
        new_start = np.concatenate([[0], np.cumsum(new_cnt)])[:-1]
        rank_in_term = np.arange(len(new_term)) - np.repeat(new_start, new_cnt)
        dest_new = np.repeat(ptr[:-1] + old_cnt, new_cnt) + rank_in_term
        slot[dest_new], tf[dest_new] = new_slot, new_tf
        self.term_ptr, self.post_slot, self.post_tf = ptr, slot, tf

    def delete(self, ords: Sequence[int] | np.ndarray) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        slots = self._slots_of(np.asarray(ords, dtype=np.int64))
        slots = slots[self.alive[slots]]
        if len(slots) == 0:
            return 0
        self.alive[slots] = False
        keep = self.alive[self.post_slot]
        n_terms = len(self.term_ptr) - 1
        term_of = np.repeat(np.arange(n_terms), np.diff(self.term_ptr))
        cnt = np.bincount(term_of[keep], minlength=n_terms)
        self.term_ptr = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
        self.post_slot, self.post_tf = self.post_slot[keep], self.post_tf[keep]
        self._scores = None
        if (~self.alive).sum() > max(1000, len(self.alive) // 4):
            self._compact()
        return len(slots)

    def _compact(self) -> None:
        new_slot = np.cumsum(self.alive) - 1
        self.post_slot = new_slot[self.post_slot].astype(np.int32)
        self.doc_len, self.slot_ord = self.doc_len[self.alive], self.slot_ord[self.alive]
        self.alive = np.ones(len(self.slot_ord), dtype=bool)

    def _slots_of(self, ords: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.slot_ord, ords)
        ok = pos < len(self.slot_ord)
        ok[ok] = self.slot_ord[pos[ok]] == ords[ok]
        return pos[ok]

    # ------------------------------------------------------------------ reads
    def _query_terms(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ptr: list[int] = [0]
        ids: list[int] = []
        weights: list[int] = []
        for toks in self.tokenizer.tokenize(queries):
            counts = Counter(t for t in toks if t in self.vocab)
            ids.extend(self.vocab[t] for t in counts)
            weights.extend(counts.values())
            ptr.append(len(ids))
        return (
            np.asarray(ptr, dtype=np.int64),
            np.asarray(ids, dtype=np.int64),
            np.asarray(weights, dtype=self.params.dtype),
        )

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        allowed: np.ndarray | None = None,
        threads: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(ords, scores)`` arrays of shape (len(queries), k), best first.

        Only documents sharing a term with the query are returned; rows are padded with id -1 and
        score 0. ``allowed`` restricts the search to these ids (a metadata filter's result).
        """
        if k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k}")
        scores = self._posting_scores()
        q_ptr, q_terms, q_w = self._query_terms(queries)
        mask = np.zeros(0, dtype=np.uint8)
        if allowed is not None:
            mask = np.zeros(len(self.slot_ord), dtype=np.uint8)
            mask[self._slots_of(np.asarray(allowed, dtype=np.int64))] = 1
        slots, vals = bm25_kernels.search(
            self.term_ptr,
            self.post_slot,
            scores,
            q_ptr,
            q_terms,
            q_w,
            mask,
            int(k),
            len(self.slot_ord),
            threads,
        )
        ords = np.where(slots >= 0, self.slot_ord[np.maximum(slots, 0)], -1) if len(self.slot_ord) else slots
        return ords, vals

    def get_scores(self, query: str) -> np.ndarray:
        """Scores of every live document (ordered by id) for one query, as float64."""
        _q_ptr, q_terms, q_w = self._query_terms([query])
        p = self.params
        _n, avgdl, _df = self._stats()
        idf = self.idf()
        norm = 1.0 - p.b + p.b * self.doc_len / (avgdl or 1.0)
        out = np.zeros(len(self.slot_ord))
        for t, w in zip(q_terms.tolist(), q_w.tolist(), strict=True):
            sl = slice(self.term_ptr[t], self.term_ptr[t + 1])
            s, tf = self.post_slot[sl], self.post_tf[sl].astype(np.float64)
            part = tf / (tf + p.k1 * norm[s]) if p.method == "lucene" else tf * (p.k1 + 1) / (tf + p.k1 * norm[s])
            np.add.at(out, s, w * idf[t] * part)
        return out[self.alive]

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"params": asdict(self.params), "tokenizer": self.tokenizer.config()}

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (an .npz file; numpy arrays only, no pickle), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        vocab_blob = np.frombuffer("\n".join(self.terms).encode("utf-8"), dtype=np.uint8)
        cfg = np.frombuffer(json.dumps(self.config()).encode("utf-8"), dtype=np.uint8)
        with open(tmp, "wb") as f:
            np.savez(
                f,
                term_ptr=self.term_ptr,
                post_slot=self.post_slot,
                post_tf=self.post_tf,
                doc_len=self.doc_len,
                slot_ord=self.slot_ord,
                alive=self.alive,
                vocab=vocab_blob,
                config=cfg,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> BM25Index:
        """Read an index written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                cfg = json.loads(bytes(z["config"]).decode("utf-8"))
                idx = cls(BM25Params(**cfg["params"]), Tokenizer(**cfg["tokenizer"]))
                blob = bytes(z["vocab"]).decode("utf-8")
                idx.terms = blob.split("\n") if blob else []
                idx.vocab = {t: i for i, t in enumerate(idx.terms)}
                for name in ("term_ptr", "post_slot", "post_tf", "doc_len", "slot_ord", "alive"):
                    setattr(idx, name, z[name])
        except (OSError, ValueError, KeyError) as e:
            raise IndexFormatError(f"cannot read BM25 index {path}: {e}; rebuild the collection") from e
        if len(idx.term_ptr) != len(idx.terms) + 1:
            raise IndexFormatError(f"BM25 index {path} is inconsistent (vocabulary size); rebuild it")
        return idx
