"""One PostgreSQL server for this package (the session's, tests/pg_server.py) and one database
on it that the package's `orion up`s share: the store that outlives the head."""

from __future__ import annotations

import pytest

from tests.pg_server import PgServer, pg_server  # noqa: F401


@pytest.fixture(scope="package")
def store_dsn(pg_server: PgServer) -> str:  # noqa: F811
    """A fresh schema on the session's server, as a DSN."""
    return pg_server.fresh_dsn()
