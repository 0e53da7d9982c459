from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.errors import ConfigError, IndexFormatError
from rag.retrievers import bm25_kernels
from rag.retrievers.bm25_index import BM25Index, BM25Params
from rag.text.tokenizer import Tokenizer

PLAIN = Tokenizer(stopwords=None, stemmer=None)


def zipf_corpus(n: int, seed: int = 0, vocab: int = 300) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]
    return [" ".join(rng.choices(words, weights=weights, k=rng.randint(0, 40))) for _ in range(n)]


QUERIES = ["w1 w2 w3", "w100 w5 w5", "w299 unknownword", "w0", "w17 w42 w8 w8 w8"]


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-6)])
def test_okapi_scores_equal_rank_bm25(dtype, rtol):
    from rank_bm25 import BM25Okapi

    corpus = zipf_corpus(400)
    idx = BM25Index(BM25Params(method="okapi", dtype=dtype), PLAIN)
    idx.add(range(len(corpus)), corpus)
    ref = BM25Okapi(PLAIN.tokenize(corpus))
    for q in QUERIES:
        expected = ref.get_scores(PLAIN.tokenize([q])[0])
        np.testing.assert_allclose(idx.get_scores(q), expected, rtol=1e-12, atol=1e-12)
        ords, scores = idx.search([q], k=10)
        np.testing.assert_allclose(scores[0], np.sort(expected)[::-1][:10], rtol=rtol)
        # every returned doc has the reference score of its rank
        np.testing.assert_allclose(expected[ords[0]], scores[0], rtol=rtol)


def test_okapi_negative_idf_floor_matches_rank_bm25():
    from rank_bm25 import BM25Okapi

    corpus = ["a b", "a c", "a d", "b e"]  # 'a' in 3 of 4 docs: negative idf, floored
    idx = BM25Index(BM25Params(method="okapi", dtype="float64"), PLAIN)
    idx.add(range(4), corpus)
    ref = BM25Okapi(PLAIN.tokenize(corpus))
    for q in ["a", "a b", "e a"]:
        np.testing.assert_allclose(idx.get_scores(q), ref.get_scores(q.split()), rtol=1e-12)


def test_lucene_scores_equal_bm25s():
    bm25s = pytest.importorskip("bm25s")
    corpus = zipf_corpus(300, seed=3)
    toks = PLAIN.tokenize(corpus)
    idx = BM25Index(BM25Params(method="lucene", k1=1.5, b=0.75, dtype="float64"), PLAIN)
    idx.add(range(len(corpus)), corpus)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    vocab = {w: i for i, w in enumerate(sorted({w for t in toks for w in t}))}
    ref.index(bm25s.tokenization.Tokenized(ids=[[vocab[w] for w in t] for t in toks], vocab=vocab), show_progress=False)
    for q in ["w1 w2 w3", "w100 w5", "w0"]:
        expected = ref.get_scores([vocab[w] for w in q.split()])
        np.testing.assert_allclose(idx.get_scores(q), expected, rtol=1e-5)


def test_numba_and_numpy_kernels_agree():
    corpus = zipf_corpus(500, seed=5)
    idx = BM25Index(BM25Params(), PLAIN)
    idx.add(range(len(corpus)), corpus)
    scores = idx._posting_scores()
    q_ptr, q_terms, q_w = idx._query_terms(QUERIES)
    mask = (np.arange(len(corpus)) % 3 == 0).astype(np.uint8)
    for m in (np.zeros(0, dtype=np.uint8), mask):
        a = bm25_kernels.search(idx.term_ptr, idx.post_slot, scores, q_ptr, q_terms, q_w, m, 7, len(corpus))
        b = bm25_kernels._search_numpy(idx.term_ptr, idx.post_slot, scores, q_ptr, q_terms, q_w, m, 7, len(corpus))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


def test_search_returns_only_matches_and_handles_large_k():
    idx = BM25Index(tokenizer=PLAIN)
    idx.add([10, 20, 30], ["red apple", "green apple", "blue sky"])
    ords, scores = idx.search(["apple"], k=50)
    assert ords.shape == (1, 50)
    assert sorted(ords[0][ords[0] >= 0].tolist()) == [10, 20]
    assert (scores[0][ords[0] < 0] == 0).all()
    ords, _ = idx.search(["nothing here"], k=3)
    assert (ords == -1).all()
    with pytest.raises(ConfigError):
        idx.search(["apple"], k=0)


def test_allowed_restricts_results():
    idx = BM25Index(tokenizer=PLAIN)
    idx.add([1, 2, 3], ["apple pie", "apple tart", "apple"])
    ords, _ = idx.search(["apple"], k=5, allowed=np.array([2]))
    assert ords[0][ords[0] >= 0].tolist() == [2]


def test_ids_must_increase():
    idx = BM25Index(tokenizer=PLAIN)
    idx.add([5], ["a"])
    with pytest.raises(ConfigError):
        idx.add([3], ["b"])


def _assert_same_scores(a: BM25Index, b: BM25Index, queries):
    np.testing.assert_array_equal(a.ords, b.ords)
    for q in queries:
        np.testing.assert_allclose(a.get_scores(q), b.get_scores(q), rtol=1e-12, atol=1e-12)
        _oa, sa = a.search([q], k=10)
        _ob, sb = b.search([q], k=10)
        np.testing.assert_allclose(sa, sb, rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "delete"]), st.integers(1, 30), st.integers(0, 10_000)),
        min_size=1,
        max_size=8,
    ),
    method=st.sampled_from(["lucene", "okapi"]),
)
def test_incremental_equals_rebuild(ops, method):
    params = BM25Params(method=method, dtype="float64")
    inc = BM25Index(params, PLAIN)
    live: dict[int, str] = {}
    next_ord = 0
    for op, n, seed in ops:
        if op == "add":
            texts = zipf_corpus(n, seed=seed, vocab=60)
            ords = list(range(next_ord, next_ord + n))
            next_ord += n
            inc.add(ords, texts)
            live.update(zip(ords, texts, strict=True))
        else:
            rng = random.Random(seed)
            gone = rng.sample(sorted(live), min(n, len(live)))
            inc.delete([*gone, 10**9])  # unknown ids are ignored
            for o in gone:
                del live[o]
    fresh = BM25Index(params, PLAIN)
    fresh.add(sorted(live), [live[o] for o in sorted(live)])
    _assert_same_scores(inc, fresh, ["w1 w2", "w3 w3 w10", "w59", "w0 w1 w2 w3 w4"])


def test_delete_compacts_and_keeps_scores():
    corpus = zipf_corpus(3000, seed=9)
    inc = BM25Index(tokenizer=PLAIN)
    inc.add(range(3000), corpus)
    assert inc.delete(range(0, 3000, 2)) == 1500  # triggers compaction
    assert len(inc.slot_ord) == 1500
    fresh = BM25Index(tokenizer=PLAIN)
    kept = list(range(1, 3000, 2))
    fresh.add(kept, [corpus[i] for i in kept])
    _assert_same_scores(inc, fresh, QUERIES)


def test_save_load_roundtrip(tmp_path):
    corpus = zipf_corpus(200, seed=2)
    idx = BM25Index(BM25Params(method="okapi", k1=1.2, b=0.5), Tokenizer(stopwords=["w1"], stemmer="english"))
    idx.add(range(200), corpus)
    idx.delete([3, 4])
    idx.save(tmp_path / "i.npz")
    back = BM25Index.load(tmp_path / "i.npz")
    assert back.params == idx.params and back.tokenizer.config() == idx.tokenizer.config()
    _assert_same_scores(idx, back, QUERIES)
    # the file holds numpy arrays only: loading with allow_pickle=False works (no object arrays)
    with np.load(tmp_path / "i.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_load_garbage_raises(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(IndexFormatError):
        BM25Index.load(tmp_path / "x.npz")


def test_tokenizer_options():
    assert Tokenizer(stemmer=None).tokenize(["The Keys ARE rotated"]) == [["keys", "rotated"]]
    assert Tokenizer().tokenize(["rotating keys"]) == [["rotat", "key"]]
    assert Tokenizer(stopwords=None, stemmer=None, lowercase=False).tokenize(["Ünïcode wörds"]) == [
        ["Ünïcode", "wörds"]
    ]
    with pytest.raises(ConfigError):
        Tokenizer(stopwords="klingon")
    with pytest.raises(ConfigError):
        Tokenizer(stemmer="klingon")
