"""The lexical verifier with and without the reader's question-answering consistency (QA_FEATURES).

    python benchmarks/reader_verifier.py                    # the reader registered as "default"
    python benchmarks/reader_verifier.py --reader DIR --train-n 800 --test-n 400

Both calibrators (lexical features; lexical + reader agreement) are fitted on the same planted-error claims built
from SQuAD **train** (``--train-n`` questions), then tested on claims from SQuAD dev and HotpotQA that neither saw:
the usual three claims per question (supported, answer swapped for one from elsewhere, unsupported by distractors)
and the hard set, where the answer is swapped for another name or number *of the same passage* (half supported,
half swapped). Prints unsupported-claim precision / recall / F1, ECE, recall per planted error, and the fitted
weights (the ones pasted into ``rag.models.verify.LEXICAL_READER``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
TESTS = {"squad": DATA / "squad_v1.1_dev", "hotpotqa": DATA / "hotpotqa_dev_distractor_sample"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default="default")
    p.add_argument("--train-n", type=int, default=800)
    p.add_argument("--test-n", type=int, default=400)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from rag.models.reader import Reader
    from rag.models.verify import NLIVerifier
    from rag.train.claims import PLANTED, build_claims, by_question
    from rag.train.verifier import evaluate_verifier, fit_calibrator

    torch.set_num_threads(args.threads)
    reader = Reader(args.reader)
    train = build_claims(DATA / "squad_v1.1_train", max_questions=args.train_n, seed=0)
    plain = NLIVerifier(None)
    plain.calibrator = fit_calibrator(plain, train)
    qa_cal = fit_calibrator(NLIVerifier(None), train, reader=reader)
    with_reader = NLIVerifier(None, reader=reader, calibrator=qa_cal)
    out: dict[str, Any] = {
        "reader": reader.path,
        "train_claims": len(train),
        "weights": {
            "lexical": dict(zip(plain.calibrator.features, plain.calibrator.weights, strict=True)),
            "lexical+reader": dict(zip(qa_cal.features, qa_cal.weights, strict=True)),
        },
    }
    print(json.dumps(out), flush=True)
    for name, folder in TESTS.items():
        test = build_claims(folder, max_questions=args.test_n, seed=1)
        hard = by_question(build_claims(folder, max_questions=args.test_n, seed=1, hard=True))
        inner = [ex for qs in hard if qs[-1].planted == PLANTED[2] for ex in (qs[0], qs[-1])]
        for label, verifier in (("lexical", plain), ("lexical+reader", with_reader)):
            row = {"all planted": evaluate_verifier(verifier, test), "same passage": evaluate_verifier(verifier, inner)}
            out[f"{name} {label}"] = row
            print(json.dumps({"set": name, "verifier": label, **row}), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "reader_verifier.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
