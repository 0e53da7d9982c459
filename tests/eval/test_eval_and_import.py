from __future__ import annotations

import math
import subprocess
import sys

import pytest

from rag.datasets import load_beir
from rag.errors import ConfigError, SourceError
from rag.eval.retrieval import evaluate_run, map_at_k, mrr_at_k, ndcg_at_k, recall_at_k


def test_metrics_by_hand():
    rels = {"a": 2, "b": 1, "z": 1}
    ranked = ["x", "a", "b", "y"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rels, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranked, rels, 1) == 0.0
    assert recall_at_k(ranked, rels, 3) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rels, 10) == pytest.approx(0.5)
    assert mrr_at_k(ranked, rels, 1) == 0.0
    assert map_at_k(ranked, rels, 10) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert ndcg_at_k(["a", "b", "z"], rels, 10) == pytest.approx(1.0)


def test_evaluate_run_counts_queries_without_results_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    out = evaluate_run({"q1": ["a"]}, qrels, ["ndcg@10", "recall@5"])
    assert out == {"ndcg@10": 0.5, "recall@5": 0.5}
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_run({}, qrels, ["precision@x"])


def test_load_beir(beir_dir, tmp_path):
    data = load_beir(beir_dir)
    assert len(data.corpus) == 4 and set(data.queries) == {"q1", "q2", "q3"}
    assert data.qrels["q3"] == {"d3": 2, "d1": 1}
    assert data.corpus[0].meta == {"title": "Key rotation"}
    with pytest.raises(SourceError, match="not a BEIR folder"):
        load_beir(tmp_path)


def test_import_rag_is_light():
    code = (
        "import sys, rag; heavy = [m for m in ('torch', 'duckdb', 'faiss', 'sentence_transformers', "
        "'numba', 'langchain_core', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
