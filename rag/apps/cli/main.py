"""The ``rag`` command: index, search, eval, reindex, info, check, delete (:mod:`rag.apps.cli.index`); ask, eval
cascade and llm-serve (:mod:`rag.apps.cli.ask`); train and models (:mod:`rag.apps.cli.models`); adapt
(:mod:`rag.apps.cli.adapt`); serve (:mod:`rag.apps.cli.serve`).

Exit status: 0 success; 1 error (message on stderr); 2 bad usage; 3 done, but some inputs were
skipped (listed on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rag.apps.cli import adapt, ask, evaluate, index, models, serve
from rag.errors import RagError


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each module of :mod:`rag.apps.cli` adds its own."""
    p = argparse.ArgumentParser(
        prog="rag", description="pilotfish: index documents, search, evaluate, train the small models."
    )
    sub = p.add_subparsers(dest="command", required=True)
    index.add_parsers(sub)
    evaluate.add_parsers(sub)
    index.add_maintenance_parsers(sub)
    ask.add_parsers(sub)
    models.add_parsers(sub)
    adapt.add_parsers(sub)
    serve.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the collection keeps its last committed state", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
