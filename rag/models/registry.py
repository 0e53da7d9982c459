"""The model registry: where trained small models live, how they are named, and their manifests.

A trained model is a directory holding the model files and ``pilotfish-model.json``::

    {"type": "pilotfish-model", "format_version": 1, "task": "reranker", "name": "scifact",
     "base": "sentence-transformers/all-MiniLM-L6-v2", "created": "...", "pilotfish_version": "0.1.0",
     "training": {"data_sha256": "...", "examples": 3676, "seconds": 812.4, ...},
     "metrics": {"ndcg@10": 0.73, ...}}

Trained models are saved into a collection (``<collection>/models/<task>/<name>``), into the user's model
home (``$PILOTFISH_MODELS``, default ``~/.local/share/pilotfish/models/<task>/<name>``), or into any
directory (``--out``). A model is written into a temporary sibling directory and renamed into place once
its manifest is complete, so an interrupted training run leaves nothing registered.

:func:`resolve_model` turns a name into something loadable, in this order: an existing directory (a trained
model is checked for its task and format); a name registered in the collection; a name registered in the
model home; otherwise the string is returned as is, for Hugging Face ids.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from rag.checks import json_digest, sha256_file
from rag.errors import ConfigError, IndexFormatError

Task = Literal["reranker", "verifier", "decomposer", "reader"]
TASKS: tuple[str, ...] = ("reranker", "verifier", "decomposer", "reader")
MANIFEST = "pilotfish-model.json"
FORMAT_VERSION = 1
DEFAULT_NAME = "default"


def models_home() -> Path:
    """The user's model home: ``$PILOTFISH_MODELS`` or ``~/.local/share/pilotfish/models``."""
    env = os.environ.get("PILOTFISH_MODELS")
    return Path(env) if env else Path.home() / ".local" / "share" / "pilotfish" / "models"


def data_hash(records: Iterable[Any]) -> str:
    """sha256 over the JSON lines of the training records (order matters)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def read_model_manifest(path: str | Path, task: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read and check a trained model's manifest and (with ``verify``) its files against their checksums.

    Raises:
        IndexFormatError: no manifest, a manifest from another task, or an unsupported format version.
    """
    path = Path(path)
    f = path / MANIFEST
    if not f.is_file():
        raise IndexFormatError(f"{path} is not a pilotfish model directory (no {MANIFEST}).")
    retrain = f"retrain it (rag train {task or 'TASK'} ... --force) or delete {path}"
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{f} is unreadable ({e}); {retrain}.") from e
    # models from before checksums have neither "checksum" nor "files"; one without the other is a damaged key
    if isinstance(m, dict) and ("checksum" in m or "files" in m) and m.get("checksum") != json_digest(m):
        raise IndexFormatError(f"{f} fails its checksum: the file was changed or corrupted; {retrain}.")
    if not isinstance(m, dict) or m.get("type") != "pilotfish-model":
        kind = m.get("type") if isinstance(m, dict) else type(m).__name__
        raise IndexFormatError(f"{f} is not a pilotfish model manifest (type={kind!r}).")
    if m.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} is a model of format version {m.get('format_version')}; this pilotfish reads version "
            f"{FORMAT_VERSION}. Retrain it with this version (rag train {m.get('task', '...')} --force)."
        )
    if task is not None and m.get("task") != task:
        raise IndexFormatError(
            f"{path} holds a {m.get('task')} model, not a {task}; pass a {task} model (rag models list shows them)."
        )
    for name, digest in (m.get("files") or {}).items() if verify else ():
        if not (path / name).is_file() or sha256_file(path / name) != digest:
            raise IndexFormatError(f"model file {path / name} is missing or fails its checksum; {retrain}.")
    return m


def model_dir(task: str, name: str, collection: str | Path | None = None) -> Path:
    """Where a model named ``name`` for ``task`` is registered (in the collection, else the model home)."""
    if task not in TASKS:
        raise ConfigError(f"unknown model task {task!r}; expected one of {', '.join(TASKS)}")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name {name!r} must be a plain name (no '/', not starting with '.')")
    root = Path(collection) / "models" if collection is not None else models_home()
    return root / task / name


def resolve_model(name: str | Path, task: str, collection: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Resolve a model name to ``(path_or_hf_id, manifest)``; the manifest is ``{}`` for non-pilotfish models."""
    p = Path(name)
    if p.is_dir():
        return str(p), (read_model_manifest(p, task) if (p / MANIFEST).exists() else {})
    text = str(name)
    if "/" not in text:
        for root in ([Path(collection)] if collection is not None else []) + [None]:
            d = committed_model(model_dir(task, text, root))
            if d is not None:
                return str(d), read_model_manifest(d, task)
    return text, {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def committed_model(dest: Path) -> Path | None:
    """The committed model at ``dest``: ``dest`` itself, or, when a writer was killed between moving the previous
    model aside and moving the new one in, the previous model (``.<name>.old-<pid>``); None when there is none."""
    if (dest / MANIFEST).exists():
        return dest
    for old in sorted(dest.parent.glob(f".{dest.name}.old-*")):
        if (old / MANIFEST).exists():
            return old
    return None


def _recover(dest: Path) -> None:
    """Undo what a killed writer left at ``dest``: put the previous model back, remove its temporary copies."""
    found = committed_model(dest)
    if found is not None and found != dest:
        os.replace(found, dest)
    for stale in dest.parent.glob(f".{dest.name}.*-*"):
        pid = stale.name.rsplit(".", 1)[-1].split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def writing_model(dest: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory to write a model into; on success it replaces ``dest`` atomically.

    The commit point is the rename of the complete temporary directory (manifest written last) to ``dest``: a
    process killed before it leaves the previous model in force (see :func:`committed_model`).

    Raises:
        ConfigError: ``dest`` exists and ``force`` is false.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _recover(dest)
    if dest.exists() and not force:
        raise ConfigError(f"{dest} already holds a model; pass --force (force=True) to overwrite it.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        yield tmp
        if not (tmp / MANIFEST).exists():
            raise RuntimeError(f"model written to {tmp} without a manifest")
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_model_manifest(path: Path, task: str, name: str, base: str, **fields: Any) -> dict[str, Any]:
    """Write ``pilotfish-model.json`` into ``path`` (call it last, after the model files)."""
    from rag.version import __version__

    m = {
        "type": "pilotfish-model",
        "format_version": FORMAT_VERSION,
        "task": task,
        "name": name,
        "base": base,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "pilotfish_version": __version__,
        **fields,
        "files": {
            f.relative_to(path).as_posix(): sha256_file(f)
            for f in sorted(path.rglob("*"))
            if f.is_file() and f.name != MANIFEST
        },
    }
    m["checksum"] = json_digest(m)
    (path / MANIFEST).write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return m


def list_models(collection: str | Path | None = None) -> list[dict[str, Any]]:
    """Every registered model (collection first, then the model home), with ``where`` and ``path`` added."""
    out: list[dict[str, Any]] = []
    roots = [("collection", Path(collection) / "models")] if collection is not None else []
    roots.append(("home", models_home()))
    for where, root in roots:
        for task in TASKS:
            d = root / task
            if not d.is_dir():
                continue
            for sub in sorted(d.iterdir()):
                if sub.name.startswith(".") or not (sub / MANIFEST).exists():
                    continue
                try:
                    m = read_model_manifest(sub, task, verify=False)
                except IndexFormatError as e:
                    m = {"task": task, "name": sub.name, "error": str(e)}
                out.append({**m, "where": where, "path": str(sub)})
    return out
