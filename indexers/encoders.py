"""The encoder a collection is built and opened with: made from a name, and checked against the collection's."""

from __future__ import annotations

from typing import Any

from rag.errors import IndexFormatError
from rag.protocols import Encoder


def make_encoder(encoder: str | Encoder | None) -> Encoder | None:
    """An encoder from a name/path (sentence-transformers), an object, or None (no dense index)."""
    if encoder is None or not isinstance(encoder, str):
        return encoder
    from rag.models.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder(encoder)


def collection_encoder(info: dict[str, Any] | None, encoder: str | Encoder | None, where: str) -> Encoder | None:
    """The encoder to open a collection with: the one it was built with (``info``: name and dimension), or
    ``encoder`` when it has that name and dimension (else :class:`~rag.errors.IndexFormatError`)."""
    enc = make_encoder(encoder) if encoder is not None else None
    if enc is None:
        return None if info is None else make_encoder(info["name"])
    if info is None:
        raise IndexFormatError(f"collection {where} has no dense index; open it without encoder=")
    name, dim = encoder_name(enc), encoder_dim(enc)
    if name != info["name"] or dim != info["dim"]:
        raise IndexFormatError(
            f"collection {where} was built with encoder {info['name']!r} (dim {info['dim']}); got {name!r} "
            f"(dim {dim}). Open it without encoder=, or index into a new collection with the new encoder."
        )
    return enc


def encoder_name(enc: Any) -> str:
    return str(getattr(enc, "name", type(enc).__name__))


def encoder_dim(enc: Any) -> int:
    dim = getattr(enc, "dim", None)
    return int(dim) if dim else int(enc.encode(["dimension probe"]).shape[1])
