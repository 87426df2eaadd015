"""Real PostgreSQL for tests: servers from the chosen backend, and the pytest plugin.

``servers`` starts a throwaway server (testcontainers, a local cluster or a given DSN, chosen by
``PGPROV_TEST_BACKEND``); ``plugin`` is the ``pytest11`` entry point with the
``pgprov_database`` fixture. This repo's own tests use the same code (tests/pgserver.py).
"""
