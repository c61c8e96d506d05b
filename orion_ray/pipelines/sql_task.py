"""The ``sql`` node kind's runner: a tenant's query on an embedded DuckDB, in a Ray task.

Orion's own task function (``runtime/task_runner.ORION_RUNNERS``): a tenant names it only through a
``sql`` node. Each input is a table named after it — a list of records (objects), an object of
columns (``{"col": [..]}``), or CSV text with a header row — loaded before the query runs; the
query's rows come back as records under the node's one out. The connection runs with no access
to the filesystem or the network (``enable_external_access = false``: ``read_csv('/etc/passwd')``,
``COPY … TO``, ``ATTACH``, ``INSTALL`` are refused), no extension loading, no Python replacement
scans, one thread and a memory cap, and its configuration locked before the tenant's SQL runs.
Standard library and duckdb only: it runs in the worker.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
import uuid
from typing import Any, Optional

MAX_QUERY_CHARS = 32_768
DEFAULT_MAX_ROWS = 100_000
MEMORY_LIMIT = "1GB"
SETTINGS: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "threads": 1,
    "memory_limit": MEMORY_LIMIT,
}


class SqlInputError(ValueError):
    """An input cannot be a table."""


def _records(name: str, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):  # CSV text, a header row first
        return [dict(r) for r in csv.DictReader(io.StringIO(value))]
    if isinstance(value, dict):  # columns
        cols = {k: v for k, v in value.items()}
        if not all(isinstance(v, list) for v in cols.values()):
            raise SqlInputError(f"input {name!r}: an object of columns must map names to lists")
        n = max((len(v) for v in cols.values()), default=0)
        return [{k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return value
    raise SqlInputError(
        f"input {name!r} is not a table: give a list of records, an object of columns or CSV text"
    )


def _sql_type(values: list[Any]) -> str:
    seen = {type(v) for v in values if v is not None}
    if not seen:
        return "VARCHAR"
    if seen == {bool}:
        return "BOOLEAN"
    if seen <= {int}:
        return "BIGINT" if all(-(2**63) <= v < 2**63 for v in values if v is not None) else "DOUBLE"
    if seen <= {int, float}:
        return "DOUBLE"
    return "VARCHAR"  # strings; nested values as their JSON text


def _cell(v: Any, kind: str) -> Any:
    if v is None:
        return None
    if kind == "VARCHAR" and not isinstance(v, str):
        return json.dumps(v)
    if kind == "DOUBLE":
        return float(v)
    return v


def _load(con: Any, name: str, value: Any) -> None:
    rows = _records(name, value)
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(str(k))
    if not columns:
        raise SqlInputError(f"input {name!r} has no columns")
    types = {c: _sql_type([r.get(c) for r in rows]) for c in columns}

    def q(ident: str) -> str:
        return '"' + ident.replace('"', '""') + '"'

    con.execute(f"CREATE TABLE {q(name)} ({', '.join(f'{q(c)} {types[c]}' for c in columns)})")
    if rows:
        marks = ", ".join("?" for _ in columns)
        con.executemany(
            f"INSERT INTO {q(name)} VALUES ({marks})",
            [[_cell(r.get(c), types[c]) for c in columns] for r in rows],
        )


def _json(v: Any) -> Any:
    """A DuckDB value as strict JSON."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, decimal.Decimal):
        return float(v) if v.is_finite() else None
    if isinstance(v, (datetime.date, datetime.time, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    return str(v)


def run_sql(
    query: str,
    tables: Optional[dict[str, Any]] = None,
    out: Optional[str] = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, Any]:
    """Run ``query`` over ``tables`` (input name → table value); ``{out: [records]}`` (``out``
    defaults to ``rows``). More than ``max_rows`` rows, a bad input or a refused statement
    raise: the node's attempt fails with the reason."""
    import duckdb

    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query must be SQL text of 1 to {MAX_QUERY_CHARS} characters")
    con = duckdb.connect(":memory:", config=dict(SETTINGS))
    try:
        for name, value in (tables or {}).items():
            _load(con, name, value)
        con.execute("SET lock_configuration = true")  # the tenant's SQL cannot undo the settings
        cur = con.execute(query)
        if cur.description is None:
            return {out or "rows": []}
        columns = [d[0] for d in cur.description]
        rows = cur.fetchmany(max_rows + 1)
        if len(rows) > max_rows:
            raise ValueError(f"the query returned more than max_rows={max_rows} rows")
        return {out or "rows": [{c: _json(v) for c, v in zip(columns, row)} for row in rows]}
    finally:
        con.close()
