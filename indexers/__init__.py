"""Collections: documents and their indexes, built, updated, saved and loaded.

Importing this package registers the two kinds of :class:`~rag.indexers.collection.Collection`, so that
``Collection.open`` and ``Collection.create`` find them by where a collection lives: a directory
(:mod:`rag.indexers.directory`) or a ``postgresql://`` URL (:mod:`rag.indexers.pg`).
"""

from rag.indexers.directory import collection as _directory  # noqa: F401  (registers the directory kind)
from rag.indexers.pg import collection as _pg  # noqa: F401  (registers the PostgreSQL kind)
