"""An experiment ``rag adapt`` did not keep: fine-tune the bi-encoder (all-MiniLM-L6-v2) itself on the same
pseudo-queries (in-batch negatives plus one mined hard negative, the MultipleNegativesRanking loss), then rerank the
hybrid top 30 by its cosine, blended with the hybrid order. Judged like ``rag adapt``'s reranker: on 200 held-out
pseudo-queries against the masked first stage, then on the test qrels. Control: the unadapted bi-encoder.

    python benchmarks/adapt_biencoder.py 10 scifact   # minutes of training, dataset (benchmarks/adapt.py's cache)
"""

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from rag import Collection
from rag.datasets import load_beir
from rag.eval.retrieval import ndcg_at_k, parent_ids
from rag.models.encoders import resolve_model_path
from rag.models.rerank import RRF_K, passage_text
from rag.train.gate import bootstrap_ci, decide
from rag.train.pseudo import Shadow, by_document, pseudo_queries
from rag.train.reranker_data import mine

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 10
DATASET = sys.argv[2] if len(sys.argv) > 2 else "scifact"
torch.manual_seed(0)
HERE = Path(__file__).resolve().parent
kb = Collection.open(HERE / "results" / "cache" / f"adapt-{DATASET}", read_only=True)
t0 = time.time()
chunks, vectors = kb.chunk_vectors()
pseudo = pseudo_queries(by_document(chunks), 2200, seed=0)
held, train = pseudo[:200], pseudo[200:]
shadow = Shadow(kb, chunks, pseudo, vectors, progress=False)
shadow.encode_queries([p.query for p in pseudo], progress=False)
queries = {p.qid: p.query for p in pseudo}
labels = {p.qid: {p.doc: 1} for p in pseudo}
groups, cands = mine(shadow, queries, labels, negatives=3, progress=False)
triples = [(g.pairs[0][0], g.pairs[0][1], g.pairs[1][1]) for p in train for g in groups.get(p.qid, [])]
print(f"data {time.time() - t0:.0f}s, {len(triples)} triples", flush=True)

model = SentenceTransformer(resolve_model_path("default"), device="cpu")
model.max_seq_length = 160
base = SentenceTransformer(resolve_model_path("default"), device="cpu")
base.max_seq_length = 160


def embed(m, texts, grad):
    feats = m.tokenize(texts)
    with torch.set_grad_enabled(grad):
        out = m(feats)["sentence_embedding"]
    return F.normalize(out, dim=-1)


opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
model.train()
random.Random(0).shuffle(triples)
B = 32
t1 = time.time()
steps = 0
losses = []
while time.time() - t1 < MINUTES * 60 and (steps + 1) * B <= len(triples):
    batch = triples[steps * B : (steps + 1) * B]
    q = embed(model, [b[0] for b in batch], True)
    d = embed(model, [b[1] for b in batch] + [b[2] for b in batch], True)
    scores = q @ d.T * 20.0
    loss = F.cross_entropy(scores, torch.arange(len(batch)))
    loss.backward()
    opt.step()
    opt.zero_grad()
    steps += 1
    losses.append(float(loss.detach()))
    if steps % 10 == 0:
        print(f"step {steps} loss {np.mean(losses[-10:]):.3f} {time.time() - t1:.0f}s", flush=True)
model.eval()
print(f"trained {steps} steps in {time.time() - t1:.0f}s", flush=True)


def rerank_scores(m, query, hits):
    q = embed(m, [query], False)
    d = embed(m, [passage_text(h) for h in hits], False)
    return (q @ d.T)[0].numpy()


def per_query(m, qs, cands, qrels):
    out = {"first_stage": {}, **{f"blend={w}": {} for w in (0.0, 0.25, 0.5, 0.75)}}
    for qid, text in qs.items():
        hits = cands[qid][:30]
        ids = parent_ids(hits)
        rel = qrels[qid]
        out["first_stage"][qid] = ndcg_at_k(ids, rel, 10)
        s = rerank_scores(m, text, hits)
        rank = {i: r for r, i in enumerate(np.argsort(-s, kind="stable"))}
        for w in (0.0, 0.25, 0.5, 0.75):
            order = sorted(range(len(hits)), key=lambda i: -((1 - w) / (RRF_K + rank[i] + 1) + w / (RRF_K + i + 1)))
            out[f"blend={w}"][qid] = ndcg_at_k([ids[i] for i in order], rel, 10)
    return out


hq = {p.qid: p.query for p in held if p.qid in cands}
for name, m in (("adapted", model), ("unadapted", base)):
    v = decide(per_query(m, hq, cands, labels))
    print(
        name, "gate", json.dumps({k: v[k] for k in ("adopt", "before", "after", "difference_ci95", "blend", "scores")})
    )
test = load_beir(HERE.parents[1] / "shared" / "data" / DATASET, "test")
first = kb.retriever("hybrid")
tc = {q: first.retrieve(t, k=30) for q, t in test.queries.items()}
for name, m in (("adapted", model), ("unadapted", base)):
    per = per_query(m, test.queries, tc, test.qrels)
    means = {k: round(np.mean(list(v.values())), 4) for k, v in per.items()}
    print(name, "test", json.dumps(means), flush=True)
    for w in (0.25, 0.5):
        diffs = [per[f"blend={w}"][q] - per["first_stage"][q] for q in per["first_stage"]]
        print("  ci blend", w, bootstrap_ci(diffs))
