"""The ``sql`` kind (DuckDB in process: tables from inputs, no filesystem, bounds) and the ``image``
kind (refused with the field and the reason where the cluster runs no containers)."""

from __future__ import annotations

import pytest

from orion_ray.errors import ValidationError
from orion_ray.pipelines.intake import accept
from orion_ray.pipelines.sql_kind import SQL_RUNNER
from orion_ray.pipelines.sql_task import MAX_QUERY_CHARS, run_sql
from orion_ray.pipelines.workloads import node_spec

ORDERS = [{"region": f"r{i % 3}", "amount": i} for i in range(30)]


def test_sql_over_records_columns_and_csv():
    got = run_sql(
        "SELECT region, sum(amount) AS total FROM orders GROUP BY region ORDER BY region",
        {"orders": ORDERS},
        "totals",
    )
    assert got == {
        "totals": [
            {"region": "r0", "total": 135},
            {"region": "r1", "total": 145},
            {"region": "r2", "total": 155},
        ]
    }
    cols = run_sql("SELECT a * 2 AS d FROM t ORDER BY d", {"t": {"a": [3, 1, 2]}})
    assert cols == {"rows": [{"d": 2}, {"d": 4}, {"d": 6}]}
    csv = run_sql("SELECT count(*) AS n, max(h2) AS m FROM c", {"c": "h1,h2\n1,x\n2,y\n"}, "o")
    assert csv == {"o": [{"n": 2, "m": "y"}]}


def test_sql_values_come_back_as_strict_json():
    got = run_sql(
        "SELECT 1.5::DECIMAL(4,2) AS d, DATE '2026-12-06' AS day, 'nan'::DOUBLE AS nan, [1, 2] AS l, x "
        "FROM t",
        {"t": [{"x": {"nested": True}}, {"x": None}]},
        "o",
    )["o"]
    assert got[0] == {"d": 1.5, "day": "2026-12-06", "nan": None, "l": [1, 2], "x": '{"nested": true}'}
    assert got[1]["x"] is None


def test_mixed_and_empty_columns():
    got = run_sql(
        "SELECT typeof(v) AS t, v FROM m ORDER BY rowid", {"m": [{"v": 1}, {"v": 2.5}, {"w": "only"}]}, "o"
    )
    assert [r["t"] for r in got["o"]] == ["DOUBLE"] * 3 and got["o"][2]["v"] is None


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "COPY (SELECT 1) TO '/tmp/orion-sql-escape.csv'",
        "ATTACH '/tmp/orion-sql-escape.db'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ],
)
def test_the_tenants_sql_cannot_reach_files_the_network_or_the_settings(query):
    with pytest.raises(Exception) as exc:
        run_sql(query, {"t": ORDERS})
    assert type(exc.value).__name__ in ("PermissionException", "InvalidInputException", "CatalogException"), (
        exc.value
    )


def test_python_variables_are_not_tables():
    secret_rows = [{"k": "secret"}]  # noqa: F841 - what a replacement scan would find
    with pytest.raises(Exception, match="secret_rows"):
        run_sql("SELECT * FROM secret_rows")


def test_sql_bounds():
    with pytest.raises(ValueError, match="max_rows=5"):
        run_sql("SELECT * FROM range(10)", max_rows=5)
    with pytest.raises(ValueError, match="query"):
        run_sql("x" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(ValueError, match="not a table"):
        run_sql("SELECT 1", {"t": [1, 2]})


# -- at the door -----------------------------------------------------------------------------------
def spec(*nodes, edges=()):
    return {
        "dag_spec": {"version": 1, "pipeline_id": "p", "nodes": list(nodes), "edges": list(edges)},
        "refs": {},
    }


PRODUCER = {
    "id": "src",
    "kind": "python_task",
    "params": {"function": "tests.pipelines.nodes_data:orders"},
    "outs": ["orders"],
}
SQL = {
    "id": "agg",
    "kind": "sql",
    "ins": ["orders"],
    "outs": ["totals"],
    "params": {"query": "SELECT region, sum(amount) AS total FROM orders GROUP BY region"},
}
EDGE = [{"from": "src", "to": "agg"}]


def test_a_sql_node_is_a_task_of_orions_runner_with_its_inputs_as_tables():
    run, ids = accept(spec(PRODUCER, SQL, edges=EDGE), tenant_id="acme", now=0)
    assert ids == ["src", "agg"]
    sub = run.submission
    w = node_spec(sub, sub.dag_spec.nodes[1], submission_id="s", attempt=1, inputs={"orders": ORDERS})
    assert w.workload_type == "task" and w.function == SQL_RUNNER
    assert w.kwargs == {
        "query": SQL["params"]["query"],
        "tables": {"orders": ORDERS},
        "out": "totals",
        "max_rows": 100_000,
    }


@pytest.mark.parametrize(
    "change, field",
    [
        ({"params": {}}, "dag_spec.nodes.agg.params.query"),
        ({"params": {"query": "x" * (MAX_QUERY_CHARS + 1)}}, "dag_spec.nodes.agg.params.query"),
        ({"params": {"query": "SELECT 1", "max_rows": 0}}, "dag_spec.nodes.agg.params.max_rows"),
        ({"params": {"query": "SELECT 1", "function": "m:f"}}, "dag_spec.nodes.agg.params.function"),
        ({"outs": ["a", "b"]}, "dag_spec.nodes.agg.outs"),
        ({"entrypoint": "echo hi"}, "dag_spec.nodes.agg.entrypoint"),
    ],
)
def test_a_bad_sql_node_is_a_422_naming_the_field(change, field):
    with pytest.raises(ValidationError) as exc:
        accept(spec(PRODUCER, {**SQL, **change}, edges=EDGE), tenant_id="acme", now=0)
    assert field in [d["field"] for d in exc.value.details], exc.value.details


IMAGE = {
    "id": "render",
    "kind": "image",
    "params": {"image": "docker.io/library/python:3.11-slim"},
    "entrypoint": "python -V",
}


def test_an_image_node_is_refused_where_the_cluster_runs_no_containers():
    with pytest.raises(ValidationError) as exc:
        accept(spec(IMAGE), tenant_id="acme", now=0, container_runtime=False)
    d = exc.value.details[0]
    assert d["field"] == "dag_spec.nodes.render.kind" and "no container runtime" in d["problem"]
    assert "container_runtime" in d["problem"]


def test_an_image_node_runs_its_command_in_the_image_where_containers_run():
    run, _ = accept(spec({**IMAGE, "env": {"MODE": "x"}}), tenant_id="acme", now=0, container_runtime=True)
    sub = run.submission
    w = node_spec(sub, sub.dag_spec.nodes[0], submission_id="s", attempt=1, inputs={})
    assert w.workload_type == "job" and w.entrypoint == "python -V"
    assert w.runtime_env == {"image_uri": "docker.io/library/python:3.11-slim", "env_vars": {"MODE": "x"}}


@pytest.mark.parametrize(
    "node, field",
    [
        ({**IMAGE, "params": {}}, "dag_spec.nodes.render.params.image"),
        ({**IMAGE, "params": {"image": "bad image"}}, "dag_spec.nodes.render.params.image"),
        ({**IMAGE, "entrypoint": None}, "dag_spec.nodes.render.entrypoint"),
        ({**IMAGE, "outs": ["x"]}, "dag_spec.nodes.render.outs"),
    ],
)
def test_a_bad_image_node_is_a_422(node, field):
    node = {k: v for k, v in node.items() if v is not None}
    with pytest.raises(ValidationError) as exc:
        accept(spec(node), tenant_id="acme", now=0, container_runtime=True)
    assert field in [d["field"] for d in exc.value.details], exc.value.details


def test_unknown_kinds_name_sql_and_image_as_installed():
    with pytest.raises(ValidationError) as exc:
        accept(spec({"id": "x", "kind": "trino_sql", "params": {}}), tenant_id="acme", now=0)
    problem = exc.value.details[0]["problem"]
    assert "sql" in problem and "image" in problem
