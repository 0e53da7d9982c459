from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.errors import ConfigError, QueryError
from rag.retrievers.hybrid import Hybrid, fuse
from rag.types import Doc, Hit


def run_of(ids, source="r"):
    return [Hit(Doc(f"text {i}", id=i), score=float(len(ids) - n), source=source) for n, i in enumerate(ids)]


ids_st = st.lists(st.sampled_from([f"d{i}" for i in range(12)]), max_size=12)
runs_st = st.lists(ids_st, min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(runs=runs_st, k=st.integers(1, 15), method=st.sampled_from(["rrf", "convex"]))
def test_fused_list_is_bounded_unique_and_sorted(runs, k, method):
    out = fuse([run_of(r) for r in runs], k, method)
    ids = [h.doc.id for h in out]
    assert len(ids) == len(set(ids)) <= k
    assert set(ids) <= {i for r in runs for i in r}
    assert all(a.score >= b.score for a, b in itertools.pairwise(out))
    assert len(ids) == min(k, len({i for r in runs for i in r}))


@settings(max_examples=200, deadline=None)
@given(runs=runs_st, data=st.data())
def test_permuting_runs_with_their_weights_changes_nothing(runs, data):
    weights = data.draw(st.lists(st.floats(0.1, 5), min_size=len(runs), max_size=len(runs)))
    perm = data.draw(st.permutations(range(len(runs))))
    a = fuse([run_of(r) for r in runs], 20, "rrf", weights)
    b = fuse([run_of(runs[i]) for i in perm], 20, "rrf", [weights[i] for i in perm])
    assert {h.doc.id: round(h.score, 12) for h in a} == {h.doc.id: round(h.score, 12) for h in b}


@settings(max_examples=200, deadline=None)
@given(run=ids_st.filter(lambda r: len(set(r)) >= 2))
def test_duplicates_inside_a_run_count_once(run):
    once = list(dict.fromkeys(run))
    a = fuse([run_of(run)], 20, "rrf")
    b = fuse([run_of(once)], 20, "rrf")
    assert [(h.doc.id, h.score) for h in a] == [(h.doc.id, h.score) for h in b]


@settings(max_examples=100, deadline=None)
@given(runs=st.lists(ids_st.filter(bool), min_size=2, max_size=3))
def test_document_first_everywhere_wins(runs):
    top = "top"
    fused = fuse([run_of([top, *r]) for r in runs], 5, "rrf")
    assert fused[0].doc.id == top


def test_weights_are_honoured_and_zero_weight_ignores_a_run():
    a, b = run_of(["x", "y"]), run_of(["y", "x"])
    assert fuse([a, b], 2, "rrf", [3, 1])[0].doc.id == "x"
    assert fuse([a, b], 2, "rrf", [1, 3])[0].doc.id == "y"
    only_a = fuse([a, run_of(["z"])], 5, "rrf", [1, 0])
    assert [h.doc.id for h in only_a] == ["x", "y"]
    assert fuse([a, b], 2, "convex", [1, 3])[0].doc.id == "y"


def test_rrf_formula():
    out = fuse([run_of(["a", "b"]), run_of(["b"])], 5, "rrf", rrf_k=60)
    scores = {h.doc.id: h.score for h in out}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)


def test_convex_normalises_each_run():
    r1 = [Hit(Doc("", id="a"), 10.0, "bm25"), Hit(Doc("", id="b"), 5.0, "bm25")]
    r2 = [Hit(Doc("", id="b"), 0.9, "dense"), Hit(Doc("", id="a"), 0.1, "dense")]
    out = {h.doc.id: h.score for h in fuse([r1, r2], 5, "convex", [1, 1])}
    assert out == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_metadata_is_merged_never_silently_overwritten():
    r1 = [Hit(Doc("t", id="a", meta={"source": "x.pdf", "page": 1}), 1.0, "bm25")]
    r2 = [Hit(Doc("t", id="a", meta={"source": "y.pdf", "lang": "en"}), 1.0, "dense")]
    (hit,) = fuse([r1, r2], 5)
    assert hit.doc.meta["source"] == "x.pdf"
    assert hit.doc.meta["lang"] == "en" and hit.doc.meta["page"] == 1
    assert hit.doc.meta["conflicts"] == {"source": ["y.pdf"]}


def test_bad_settings_raise():
    with pytest.raises(ConfigError):
        fuse([[], []], 5, "rrf", [1])
    with pytest.raises(ConfigError):
        fuse([[]], 5, "median")
    with pytest.raises(ConfigError):
        fuse([[], []], 5, "rrf", [0, 0])
    with pytest.raises(ConfigError):
        Hybrid()


class _Static:
    def __init__(self, ids):
        self.ids = ids

    def retrieve(self, query, k=10, filters=None):
        return run_of(self.ids)[:k]


def test_hybrid_is_a_retriever():
    from rag.protocols import Retriever

    h = Hybrid(_Static(["a", "b"]), _Static(["b", "c"]), k=2)
    assert isinstance(h, Retriever)
    assert [x.doc.id for x in h.retrieve("q")] == ["b", "a"]
    assert len(h.retrieve("q", k=10)) == 3
    with pytest.raises(QueryError):
        h.retrieve("   ")
    with pytest.raises(ConfigError):
        h.retrieve("q", k=0)
    nested = Hybrid(h, _Static(["c"]))
    assert {x.doc.id for x in nested.retrieve("q")} == {"a", "b", "c"}
