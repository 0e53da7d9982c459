"""``rag serve``: the HTTP API and the web chat page over one or more collections (see :mod:`rag.apps.server.app`), run
by uvicorn with a per-request deadline against slow clients (``--request-timeout``; see :mod:`rag.apps.server.http`)."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from rag.apps.cli.common import add_pipeline_args, pipeline_options


def _collections(values: list[str]) -> dict[str, str]:
    """``{name: DIR or URL}`` from ``--collection DIR`` (named by its folder), ``--store URL`` (named by its
    ``collection`` parameter) or either as ``NAME=DIR`` / ``NAME=URL``."""
    from rag.errors import ConfigError
    from rag.indexers.collection import collection_name, is_store_url

    named: dict[str, str] = {}
    for v in values:
        m = re.match(r"^([\w.\-]+)=(.+)$", v)
        name, where = m.groups() if m and not is_store_url(v) else ("", v)
        name = name or collection_name(where)
        if name in named:
            raise ConfigError(f"two collections are named {name!r}; serve them as NAME=DIR with distinct names")
        named[name] = where
    return named


def cmd_serve(args: argparse.Namespace) -> int:
    from rag.apps.server.app import create_app
    from rag.apps.server.http import run, server_config

    token = args.token or os.environ.get("PILOTFISH_TOKEN") or None
    app = create_app(
        _collections(args.collection),
        token=token,
        max_body=args.max_body,
        cors_origins=args.cors_origin,
        read_only=args.read_only,
        **pipeline_options(args),
    )
    for served in app.state.served.values():
        served.warm()
    url = f"http://{args.host}:{args.port}"
    names = ", ".join(app.state.served)
    auth = "bearer token required" if token else "no auth"
    print(f"serving {names} at {url} (chat page at /, API docs at /docs; {auth}); Ctrl-C stops", flush=True)
    config = server_config(app, args.host, args.port, request_timeout=args.request_timeout, keep_alive=args.keep_alive,
                           log_level=args.log_level, timeout_graceful_shutdown=5)  # fmt: skip
    return 0 if run(config) else 1


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="serve collections over HTTP: search, ask, documents, chat page, OpenAI API")
    s.add_argument(
        "--collection",
        "--store",
        action="append",
        required=True,
        metavar="[NAME=]DIR|URL",
        help="collection directory or postgresql:// URL (--store); repeat for several, the first is the default",
    )
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default $PILOTFISH_TOKEN; unset: no auth)")
    s.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    s.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin, e.g. https://app.example.com (repeatable)")  # fmt: skip
    s.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="close a connection whose request (head and body) is not in after this long, with 408; "
                   "guards against slow clients (default 30; 0: no limit)")  # fmt: skip
    s.add_argument(
        "--keep-alive",
        type=int,
        default=20,
        metavar="SECONDS",
        help="close a kept-alive connection idle this long (default 20: clients drop theirs first)",
    )
    s.add_argument("--read-only", action="store_true", help="open collections read-only: no /documents writes")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    add_pipeline_args(s)
    s.set_defaults(func=cmd_serve)
