"""The ``sql`` node kind at the door: what such a node must say, and its workload. Pure.

```yaml
- {id: totals, kind: sql, ins: [orders], outs: [by_region],
   params: {query: "SELECT region, sum(amount) AS total FROM orders GROUP BY region", max_rows: 1000}}
```

Each of ``ins`` is a table of that name (the upstream value: records, columns or CSV text); the
node's one out (if any) is the query's rows as records — inline when small, an artifact when
large, as any output. It runs as a ``task`` workload of Orion's runner
``orion_ray.pipelines.sql_task:run_sql`` (DuckDB, no filesystem or network access; see there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sql_task import DEFAULT_MAX_ROWS, MAX_QUERY_CHARS

if TYPE_CHECKING:
    from .spec import Node, Submission

KIND = "sql"
SQL_RUNNER = "orion_ray.pipelines.sql_task:run_sql"
PARAMS = ("query", "max_rows")
MAX_ROWS_CEILING = 1_000_000


def node_problems(sub: "Submission") -> list[dict[str, str]]:
    """A detail for each thing a ``sql`` node gets wrong (checked at submit: a 422 naming it)."""
    out: list[dict[str, str]] = []
    for n in sub.dag_spec.nodes:
        if n.kind != KIND:
            continue
        field = f"dag_spec.nodes.{n.id}"
        query = n.params.get("query")
        if not isinstance(query, str) or not query.strip():
            out.append(
                {"field": f"{field}.params.query", "problem": "a sql node needs params.query (SQL text)"}
            )
        elif len(query) > MAX_QUERY_CHARS:
            out.append(
                {"field": f"{field}.params.query", "problem": f"longer than {MAX_QUERY_CHARS} characters"}
            )
        rows = n.params.get("max_rows", DEFAULT_MAX_ROWS)
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS_CEILING:
            out.append(
                {"field": f"{field}.params.max_rows", "problem": f"an integer in [1, {MAX_ROWS_CEILING}]"}
            )
        for k in sorted(set(n.params) - set(PARAMS)):
            out.append(
                {
                    "field": f"{field}.params.{k[:64]}",
                    "problem": f"not a sql node parameter ({', '.join(PARAMS)})",
                }
            )
        if len(n.outs) > 1:
            out.append({"field": f"{field}.outs", "problem": "a sql node has one out: the query's rows"})
        if n.entrypoint or sub.refs.get(n.id):
            what = "entrypoint" if n.entrypoint else f"refs.{n.id}"
            out.append(
                {
                    "field": f"{field}.{what}" if n.entrypoint else what,
                    "problem": "a sql node runs its query, no code",
                }
            )
    return out


def workload_fields(node: "Node", inputs: dict[str, Any]) -> dict[str, Any]:
    """The task workload of one attempt: Orion's DuckDB runner with the query and the tables."""
    return {
        "workload_type": "task",
        "function": SQL_RUNNER,
        "kwargs": {
            "query": node.params.get("query"),
            "tables": dict(inputs),
            "out": node.outs[0] if node.outs else None,
            "max_rows": node.params.get("max_rows", DEFAULT_MAX_ROWS),
        },
    }
