"""The BM25 tokeniser: unicode words, lowercase, optional stop words and stemming.

Example:
    >>> Tokenizer(stemmer=None).tokenize(["The keys ROTATE daily"])
    [['keys', 'rotate', 'daily']]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from rag.errors import ConfigError, MissingDependencyError

# Lucene's English stop words (also the default of Elasticsearch and bm25s).
STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Tokenizer:
    """Splits text into index terms.

    Args:
        lowercase: fold case before anything else.
        stopwords: ``"en"`` for the English list, ``None`` for none, or an explicit list of words.
        stemmer: a Snowball language (``"english"``, ``"french"``, ...) or ``None``. Needs PyStemmer.
        min_len: drop tokens shorter than this many characters.
    """

    lowercase: bool = True
    stopwords: str | list[str] | None = "en"
    stemmer: str | None = "english"
    min_len: int = 1
    _stop: frozenset[str] = field(init=False, repr=False, compare=False)
    _stem_cache: dict[str, str | None] = field(init=False, repr=False, compare=False)
    _stem: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stopwords is None:
            self._stop = frozenset()
        elif isinstance(self.stopwords, str):
            if self.stopwords != "en":
                raise ConfigError(f"unknown stop-word list {self.stopwords!r}; use 'en', None, or a list of words")
            self._stop = STOPWORDS_EN
        else:
            self._stop = frozenset(w.lower() if self.lowercase else w for w in self.stopwords)
        self._stem_cache = {}
        self._stem = None
        if self.stemmer:
            try:
                import Stemmer  # PyStemmer
            except ImportError as e:
                raise MissingDependencyError("PyStemmer", purpose="BM25 stemming") from e
            try:
                self._stem = Stemmer.Stemmer(self.stemmer)
            except KeyError as e:
                raise ConfigError(f"unknown stemmer language {self.stemmer!r}; one of {Stemmer.algorithms()}") from e

    def config(self) -> dict[str, Any]:
        """Parameters as a JSON-able dict (saved in the manifest)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def words(self, text: str) -> list[str]:
        """The raw words of a text (case-folded when ``lowercase``), before stop words and stemming."""
        return _WORD.findall(text.lower() if self.lowercase else text)

    def terms(self, words: Iterable[str]) -> dict[str, str | None]:
        """Map each distinct word to its index term, or None when it is dropped (stop word, too short)."""
        cache = self._stem_cache
        out: dict[str, str | None] = {}
        missing = []
        for w in set(words):
            if w in cache:
                out[w] = cache[w]
            else:
                missing.append(w)
        if missing:
            keep = [w for w in missing if len(w) >= self.min_len and w not in self._stop]
            stems = self._stem.stemWords(keep) if self._stem is not None and keep else keep
            new: dict[str, str | None] = dict.fromkeys(missing)
            new.update(zip(keep, stems, strict=True))
            if len(cache) + len(new) > 2_000_000:  # bound memory on unbounded vocabularies
                cache.clear()
            cache.update(new)
            out.update(new)
        return out

    def tokenize(self, texts: Iterable[str]) -> list[list[str]]:
        """Tokenise each text into a list of terms."""
        out = []
        for text in texts:
            words = self.words(text)
            table = self.terms(words)
            out.append([t for t in map(table.__getitem__, words) if t is not None])
        return out
