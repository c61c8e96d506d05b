"""A node kind added through the entry-point group ``orion.pipeline_kinds``: named among the installed
kinds, accepted at submit, and its node run as the workload spec the plugin gives; a plugin that
gives no spec is refused at submit naming the node. The plugins are looked up once per process."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from orion_ray.errors import ValidationError
from orion_ray.pipelines import kinds
from orion_ray.pipelines.intake import accept
from orion_ray.pipelines.workloads import node_spec


class TrinoSql:
    """What a plugin package would ship: one attempt of a node as an Orion workload spec."""

    @staticmethod
    def workload_spec(node, *, inputs, env, priority):
        return {
            "workload_type": "task",
            "function": "math:fsum",
            "args": [[len(node.params.get("query", "")), *inputs.values()]],
        }


class Broken:
    @staticmethod
    def workload_spec(node, **_kw):
        return None


@pytest.fixture
def plugins(monkeypatch):
    eps = [
        EntryPoint("trino_sql", f"{__name__}:TrinoSql", kinds.ENTRY_POINT_GROUP),
        EntryPoint("broken", f"{__name__}:Broken", kinds.ENTRY_POINT_GROUP),
        EntryPoint("python_task", f"{__name__}:Broken", kinds.ENTRY_POINT_GROUP),  # cannot shadow
    ]
    calls = []

    def fake(group):
        calls.append(group)
        return [e for e in eps if e.group == group]

    monkeypatch.setattr(kinds, "entry_points", fake)
    kinds.plugin_kinds.cache_clear()
    yield calls
    kinds.plugin_kinds.cache_clear()


def body(kind):
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "p",
            "nodes": [
                {"id": "n", "kind": "python_task", "params": {"function": "math:sqrt"}, "outs": ["x"]},
                {"id": "q", "kind": kind, "params": {"query": "SELECT 1"}, "ins": ["x"]},
            ],
            "edges": [{"from": "n", "to": "q"}],
        }
    }


def test_an_installed_plugin_is_named_accepted_and_gives_the_nodes_workload(plugins):
    assert kinds.installed_kinds() == (*kinds.BUILTIN, "broken", "trino_sql")
    run, ids = accept(body("trino_sql"), tenant_id="acme", now=0.0)
    sub = run.submission
    spec = node_spec(sub, sub.dag_spec.node("q"), submission_id="s", attempt=1, inputs={"x": 4.0})
    assert spec.function == "math:fsum" and spec.args == [[8, 4.0]]
    assert spec.metadata.request_id == "s/q/1"
    kinds.installed_kinds()
    assert plugins == [kinds.ENTRY_POINT_GROUP]  # looked up once, not at every parse


def test_a_plugin_that_gives_no_spec_is_refused_at_submit_naming_the_node(plugins):
    with pytest.raises(ValidationError) as info:  # the door builds each node's workload once
        accept(body("broken"), tenant_id="acme", now=0.0)
    assert info.value.details[0]["field"].startswith("dag_spec.nodes.q")
    assert "no workload spec" in info.value.details[0]["problem"]


def test_an_uninstalled_kind_names_the_installed_plugins(plugins):
    with pytest.raises(ValidationError) as info:
        accept(body("flink_job"), tenant_id="acme", now=0.0)
    assert "trino_sql" in info.value.details[0]["problem"]
