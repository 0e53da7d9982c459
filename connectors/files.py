"""Reading files and folders: .txt, .md, .html (visible text), .pdf (pypdf, page numbers), .jsonl
(BEIR format). Tabular files (CSV, TSV, Excel, Parquet, JSON, JSONL without a ``text`` field, DuckDB and SQLite
databases) are tables: :func:`load_path` lists them in ``LoadReport.tables`` for
:func:`rag.indexers.tables.add_tables`.

Each document's metadata names its ``source`` (path relative to the folder indexed) and ``title``; a
PDF's chunks get their ``page``. Files that cannot be read are reported with the reason, never fatal.

Example:
    >>> report = load_path("docs/")                      # doctest: +SKIP
    >>> len(report.docs), [s.reason for s in report.skipped]  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from rag.connectors.common import Skipped, decode_text
from rag.errors import SourceError
from rag.types import Doc

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".html", ".htm", ".pdf", ".jsonl"}
MAX_BYTES = 512 * 1024 * 1024


@dataclass
class LoadReport:
    """What :func:`load_path` read: the documents, the table files (read by
    :func:`rag.indexers.tables.add_tables`) and the files it skipped."""

    docs: list[Doc] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0


def iter_files(path: str | Path) -> Iterator[Path]:
    """Files under ``path`` (or ``path`` itself), sorted, hidden files and folders left out."""
    p = Path(path)
    if not p.exists():
        raise SourceError(str(path), "no such file or folder")
    if p.is_file():
        yield p
        return
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield f


def load_path(path: str | Path) -> LoadReport:
    """Read every supported file under ``path`` into documents (see :func:`read_file`); list table files."""
    from rag.connectors.tables import is_table_file

    report = LoadReport()
    root = Path(path)
    for f in iter_files(path):
        report.files += 1
        if is_table_file(f):
            report.tables.append(f)
            continue
        try:
            docs, skipped = read_file(f, root=root if root.is_dir() else f.parent)
        except SourceError as e:
            report.skipped.append(Skipped(e.source, e.reason))
            continue
        report.docs.extend(docs)
        report.skipped.extend(skipped)
    return report


def read_file(path: str | Path, root: str | Path | None = None) -> tuple[list[Doc], list[Skipped]]:
    """Read one file into documents. Raises :class:`SourceError` naming the file and the reason.

    Returns the documents and the parts of the file that were skipped (bad lines of a JSONL file).
    """
    p = Path(path)
    rel = p.relative_to(root).as_posix() if root else p.name
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        from rag.connectors.tables import TABLE_SUFFIXES

        hint = "; it is a table: read it with rag.indexers.tables.add_tables" if suffix in TABLE_SUFFIXES else ""
        raise SourceError(
            rel, f"unsupported file type {suffix or '(none)'}; supported: {sorted(SUFFIXES | TABLE_SUFFIXES)}{hint}"
        )
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SourceError(rel, f"file too large ({size} bytes > {MAX_BYTES}); split it first")
        data = p.read_bytes()
    except OSError as e:
        raise SourceError(rel, f"cannot read: {e.strerror or e}") from e
    if not data.strip():
        raise SourceError(rel, "empty file")
    if suffix == ".pdf":
        from rag.connectors.isolate import run_isolated

        return [run_isolated(rel, _read_pdf, data, rel)], []
    text = decode_text(data, rel)
    if not text.strip():
        raise SourceError(rel, "no text (only whitespace or control characters)")
    if suffix in TEXT_SUFFIXES:
        title = _md_title(text) if suffix in (".md", ".markdown") else None
        return [Doc(text=text, id=rel, meta={"source": rel, "title": title or p.stem})], []
    if suffix in (".html", ".htm"):
        title, body = html_to_text(text)
        if not body.strip():
            raise SourceError(rel, "no visible text in the HTML")
        return [Doc(text=body, id=rel, meta={"source": rel, "title": title or p.stem})], []
    return _read_jsonl(text, rel)


def _md_title(text: str) -> str | None:
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


class _VisibleText(HTMLParser):
    _HIDDEN: ClassVar[frozenset[str]] = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK: ClassVar[frozenset[str]] = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "tr",
            "table",
            "section",
            "article",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "blockquote",
            "header",
            "footer",
            "hr",
            "dt",
            "dd",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str | None, str]:
    """``(title, visible text)`` of an HTML page: scripts, styles and the head left out."""
    p = _VisibleText()
    p.feed(html)
    p.close()
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(p.parts))
    text = re.sub(r" *\n[ \n]*", "\n", text).strip()
    title = " ".join("".join(p.title).split()) or None
    return title, text


def _read_pdf(data: bytes, rel: str) -> Doc:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as e:  # pragma: no cover
        raise SourceError(rel, "reading PDF needs pypdf: pip install pypdf") from e
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damage is reported per file, not logged
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise SourceError(rel, "encrypted PDF; decrypt it first")
        pages = [(pg.extract_text() or "").strip() for pg in reader.pages]
        meta_title = reader.metadata.title if reader.metadata else None
    except SourceError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise SourceError(rel, f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from e
    if not any(pages):
        raise SourceError(rel, "no extractable text in the PDF (scanned? run OCR first)")
    starts, parts, pos = [], [], 0
    for text in pages:
        starts.append(pos)
        parts.append(text)
        pos += len(text) + 2
    title = str(meta_title).strip() if meta_title else Path(rel).stem
    meta = {"source": rel, "title": title, "pages": len(pages), "page_starts": starts}
    return Doc(text="\n\n".join(parts), id=rel, meta=meta)


def _read_jsonl(text: str, rel: str) -> tuple[list[Doc], list[Skipped]]:
    docs, skipped = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append(Skipped(f"{rel}:{n}", f"invalid JSON ({e.msg})"))
            continue
        if not isinstance(obj, dict):
            skipped.append(Skipped(f"{rel}:{n}", "a line must be a JSON object"))
            continue
        body = next((obj[k] for k in ("text", "contents", "content") if isinstance(obj.get(k), str)), None)
        if body is None or not (body.strip() or str(obj.get("title", "")).strip()):
            skipped.append(Skipped(f"{rel}:{n}", "no 'text' field"))
            continue
        if not body.strip():  # a title without text (BEIR has some): the title is the text
            body = str(obj["title"])
        did = str(obj.get("_id", obj.get("id", f"{rel}#L{n}")))
        meta: dict[str, Any] = {"source": rel}
        if isinstance(obj.get("metadata"), dict):
            meta.update(obj["metadata"])
        for k, v in obj.items():
            if k not in ("_id", "id", "text", "contents", "content", "metadata") and isinstance(
                v, str | int | float | bool
            ):
                meta.setdefault(k, v)
        if not meta.get("title"):
            meta.pop("title", None)
        docs.append(Doc(text=body, id=did, meta=meta))
    if not docs and skipped:
        raise SourceError(rel, f"no valid line ({skipped[0].reason} at {skipped[0].path})")
    return docs, skipped
