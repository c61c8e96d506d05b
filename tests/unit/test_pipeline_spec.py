"""The pipeline spec (issue 16): the issue's YAML accepted verbatim, and every refusal a 422 that
names the field and the reason."""

import json

import pytest

from orion_ray.errors import ValidationError
from orion_ray.pipelines import graph, kinds
from orion_ray.pipelines.spec import parse_duration, parse_submission

ISSUE_YAML = """\
version: 1
pipeline_id: bt_xs_bilstm_v1
slo: {max_runtime: "2h", retry: {max_attempts: 2, backoff_sec: 60}, priority: normal, qos: spot_ok}
resources: {default: {cpu: "4", mem: "16Gi"}}
nodes:
  - {id: fetch_data, kind: python_task, params: {...}, outs: [dataset_uri]}
  - {id: compute_features, kind: python_task, env: {FEATURE_VIEW: xs_v2}, ins: [dataset_uri], outs: [feature_table]}
  - {id: train_model, kind: ray_job, params: {trainer: bilstm, epochs: 30},
     resources: {gpu: 1, cpu: "8", mem: "32Gi"}, ins: [feature_table], outs: [model_uri, metrics_json]}
edges: [{from: fetch_data, to: compute_features}, {from: compute_features, to: train_model}]
"""  # noqa: E501 (the issue's text, verbatim)
GI = 2**30


def node(node_id, kind="python_task", **fields):
    return {"id": node_id, "kind": kind, "params": {"function": "pkg.mod:fn"}, **fields}


def dag(nodes, edges=(), **fields):
    return {"version": 1, "pipeline_id": "p", "nodes": list(nodes), "edges": list(edges), **fields}


def edge(a, b):
    return {"from": a, "to": b}


def refused(body, **kw):
    with pytest.raises(ValidationError) as info:
        parse_submission(body, **kw)
    assert info.value.status_code == 422
    assert info.value.details and all(set(d) == {"field", "problem"} for d in info.value.details)
    return info.value.details


# -- the issue's spec ------------------------------------------------------------------------------
def test_the_issues_yaml_is_accepted_verbatim():
    sub = parse_submission({"dag_spec": ISSUE_YAML})
    spec = sub.dag_spec
    assert spec.pipeline_id == "bt_xs_bilstm_v1" and spec.version == 1
    assert spec.slo.max_runtime == 7200
    assert (spec.slo.retry.max_attempts, spec.slo.retry.backoff_sec) == (2, 60)
    assert spec.slo.priority.value == "normal" and spec.slo.qos == "spot_ok"
    assert [n.id for n in spec.nodes] == ["fetch_data", "compute_features", "train_model"]
    assert spec.node("compute_features").env == {"FEATURE_VIEW": "xs_v2"}
    assert spec.node("train_model").call_params() == {"trainer": "bilstm", "epochs": 30}
    assert graph.binding(spec) == {
        "fetch_data": {},
        "compute_features": {"dataset_uri": "fetch_data"},
        "train_model": {"feature_table": "compute_features"},
    }


def test_resources_merge_the_default_under_the_nodes_own():
    spec = parse_submission({"dag_spec": ISSUE_YAML}).dag_spec
    default = spec.resources.default
    fetch = (spec.node("fetch_data").resources, default)
    assert fetch[0] is None and default is not None
    train = spec.node("train_model").resources.merged_over(default)
    assert (train.cpu, train.gpu, train.memory) == (8, 1, 32 * GI)
    only_gpu = parse_submission(
        {"dag_spec": dag([node("a", resources={"gpu": 1})], resources=spec.resources.model_dump())}
    )
    merged = only_gpu.dag_spec.nodes[0].resources.merged_over(only_gpu.dag_spec.resources.default)
    assert (merged.cpu, merged.gpu, merged.memory) == (4, 1, 16 * GI)


def test_json_text_and_objects_are_accepted_as_well_as_yaml():
    as_obj = parse_submission({"dag_spec": dag([node("a")])})
    as_json = parse_submission({"dag_spec": json.dumps(dag([node("a")]))})
    assert as_obj == as_json


def test_runtime_params_of_the_issue():
    rp = {
        "submission_id": "run-2026-12-06",
        "env": {"STAGE": "prod"},
        "labels": {"team": "xs"},
        "secrets_scope": "team/xs",
        "priority": "high",
        "affinity": {"compute_pool": "gpu_spot"},
        "ttl_days": 7,
    }
    sub = parse_submission({"dag_spec": ISSUE_YAML, "runtime_params": rp})
    assert sub.runtime_params.submission_id == "run-2026-12-06"
    assert sub.priority().value == "high"  # runtime priority over slo.priority
    assert sub.runtime_params.affinity == {"compute_pool": "gpu_spot"}


def test_retry_per_node_overrides_the_slo():
    sub = parse_submission({"dag_spec": dag([node("a", retry={"max_attempts": 5}), node("b")])})
    assert sub.retry_of(sub.dag_spec.node("a")).max_attempts == 5
    assert sub.retry_of(sub.dag_spec.node("b")).max_attempts == 1


@pytest.mark.parametrize(
    "text,seconds", [("2h", 7200), ("90s", 90), ("15m", 900), ("1d", 86400), (30, 30), ("2.5", 2.5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "2 weeks", "-1h", "0", True, "99999d"])
def test_bad_durations_are_refused(bad):
    details = refused({"dag_spec": dag([node("a")], slo={"max_runtime": bad})})
    assert details[0]["field"] == "dag_spec.slo.max_runtime"


# -- kinds ------------------------------------------------------------------------------------------
def test_an_unknown_kind_names_the_installed_ones():
    details = refused({"dag_spec": dag([node("a", kind="trino_sql")])})
    assert details[0]["field"] == "dag_spec.nodes.a.kind"
    assert "python_task" in details[0]["problem"] and "ray_job" in details[0]["problem"]


def test_every_built_in_kind_of_the_issue_is_installed_and_named():
    details = refused({"dag_spec": dag([node("a", kind="flink_job")])})
    for kind in ("python_task", "ray_job", "map", "sql", "image"):
        assert kind in details[0]["problem"]


def test_an_installed_plugin_kind_is_accepted():
    sub = parse_submission(
        {"dag_spec": dag([node("a", kind="spark_sql")])}, installed=("python_task", "spark_sql")
    )
    assert sub.dag_spec.nodes[0].kind == "spark_sql"


def test_installed_kinds_start_with_the_builtins():
    assert kinds.installed_kinds()[:2] == ("python_task", "ray_job")


def test_a_node_must_name_its_code_to_run():
    sub = parse_submission({"dag_spec": ISSUE_YAML})
    problems = kinds.runnable_problems(sub)
    assert {p["field"] for p in problems} == {
        f"dag_spec.nodes.{n}.params.function" for n in ("fetch_data", "compute_features", "train_model")
    }
    refs = {n: f"helpers.pipe:{n}" for n in ("fetch_data", "compute_features", "train_model")}
    assert kinds.runnable_problems(parse_submission({"dag_spec": ISSUE_YAML, "refs": refs})) == []


def test_function_and_entrypoint_together_or_an_entrypoint_with_outs_are_refused():
    both = parse_submission({"dag_spec": dag([node("a", entrypoint="echo hi")])})
    assert "not both" in kinds.runnable_problems(both)[0]["problem"]
    cmd = {"id": "a", "kind": "ray_job", "entrypoint": "python train.py", "outs": ["model_uri"]}
    assert (
        kinds.runnable_problems(parse_submission({"dag_spec": dag([cmd])}))[0]["field"]
        == "dag_spec.nodes.a.outs"
    )


def test_refs_must_name_nodes_and_functions():
    assert refused({"dag_spec": dag([node("a")]), "refs": {"zz": "m:f"}})[0]["field"] == "refs.zz"
    assert refused({"dag_spec": dag([node("a")]), "refs": {"a": "not a function"}})[0]["field"] == "refs.a"


# -- graph ------------------------------------------------------------------------------------------
def test_a_cycle_is_refused_naming_a_node_on_it():
    details = refused(
        {"dag_spec": dag([node("a"), node("b"), node("c")], [edge("a", "b"), edge("b", "c"), edge("c", "b")])}
    )
    assert details[0]["field"] in ("dag_spec.nodes.b", "dag_spec.nodes.c")
    assert (
        "cycle" in details[0]["problem"]
        and "b → c → b" in details[0]["problem"]
        or "c → b → c" in details[0]["problem"]
    )


def test_a_self_edge_is_a_cycle():
    assert "cycle" in refused({"dag_spec": dag([node("a")], [edge("a", "a")])})[0]["problem"]


def test_a_long_chain_is_checked_without_recursion():
    n = 1000
    nodes = [node(f"n{i}", ins=["x"] if i else [], outs=["x"]) for i in range(n)]
    edges = [edge(f"n{i}", f"n{i + 1}") for i in range(n - 1)]
    # every node downstream of two producers of "x" would be ambiguous: keep one producer
    nodes = [node(f"n{i}") for i in range(n)]
    sub = parse_submission({"dag_spec": dag(nodes, edges)})
    assert graph.topological(sub.dag_spec)[-1] == f"n{n - 1}"
    cyclic = edges + [edge(f"n{n - 1}", "n0")]
    assert "cycle" in refused({"dag_spec": dag(nodes, cyclic)})[0]["problem"]


def test_an_unbound_input_is_refused_naming_node_and_input():
    details = refused({"dag_spec": dag([node("a", outs=["x"]), node("b", ins=["y"])], [edge("a", "b")])})
    assert details[0]["field"] == "dag_spec.nodes.b.ins.y"
    assert "'y'" in details[0]["problem"] and "'b'" in details[0]["problem"]


def test_an_input_needs_an_edge_path_not_just_a_producer():
    details = refused({"dag_spec": dag([node("a", outs=["x"]), node("b", ins=["x"])])})
    assert details[0]["field"] == "dag_spec.nodes.b.ins.x"


def test_inputs_bind_through_indirect_ancestors():
    sub = parse_submission(
        {
            "dag_spec": dag(
                [node("a", outs=["x"]), node("b"), node("c", ins=["x"])], [edge("a", "b"), edge("b", "c")]
            )
        }
    )
    assert graph.binding(sub.dag_spec)["c"] == {"x": "a"}


def test_an_input_produced_by_two_ancestors_is_ambiguous():
    nodes = [node("a", outs=["x"]), node("b", outs=["x"]), node("c", ins=["x"])]
    details = refused({"dag_spec": dag(nodes, [edge("a", "c"), edge("b", "c")])})
    assert "ambiguous" in details[0]["problem"]


def test_duplicate_ids_and_unknown_edge_ends():
    assert "used 2 times" in refused({"dag_spec": dag([node("a"), node("a")])})[0]["problem"]
    details = refused({"dag_spec": dag([node("a")], [edge("a", "ghost")])})
    assert details[0]["field"] == "dag_spec.edges.0.to"


def test_a_param_that_is_also_an_input_is_refused():
    nodes = [node("a", outs=["x"]), node("b", ins=["x"], params={"function": "m:f", "x": 1})]
    assert refused({"dag_spec": dag(nodes, [edge("a", "b")])})[0]["field"] == "dag_spec.nodes.b.params.x"


# -- bounds -----------------------------------------------------------------------------------------
def test_too_many_nodes():
    nodes = [node(f"n{i}") for i in range(1001)]
    assert refused({"dag_spec": dag(nodes)})[0]["field"] == "dag_spec.nodes"
    assert parse_submission({"dag_spec": dag(nodes)}, max_nodes=2000)


@pytest.mark.parametrize(
    "bad,field",
    [
        (dag([node("a/b")]), "dag_spec.nodes.0.id"),
        (dag([node("a", outs=["not-a-name"])]), "dag_spec.nodes.0.outs"),
        (dag([node("a", env={"1BAD": "x"})]), "dag_spec.nodes.0.env"),
        (
            dag([node("a", params={"function": "m:f", "deep": json.loads("[" * 40 + "]" * 40)})]),
            "dag_spec.nodes.0.params",
        ),
        (dag([node("a", params={"function": "m:f", "s": "x" * 70_000})]), "dag_spec.nodes.0.params"),
        (dag([node("a", surprise=1)]), "dag_spec.nodes.0.surprise"),
        (dag([]), "dag_spec.nodes"),
        ({**dag([node("a")]), "version": 2}, "dag_spec.version"),
        (dag([node("a", resources={"cpu": "lots"})]), "dag_spec.nodes.0.resources.cpu"),
    ],
)
def test_bounded_and_typed_fields(bad, field):
    details = refused({"dag_spec": bad})
    assert details[0]["field"] == field, details


def test_runtime_params_are_checked():
    assert refused({"dag_spec": dag([node("a")]), "runtime_params": {"submission_id": "a/b"}})[0][
        "field"
    ].startswith("runtime_params.submission_id")
    assert (
        refused({"dag_spec": dag([node("a")]), "runtime_params": {"ttl_days": 0}})[0]["field"]
        == "runtime_params.ttl_days"
    )
    assert (
        refused({"dag_spec": dag([node("a")]), "runtime_params": {"priority": "urgent"}})[0]["field"]
        == "runtime_params.priority"
    )
    many = {f"k{i}": "v" for i in range(65)}
    assert (
        refused({"dag_spec": dag([node("a")]), "runtime_params": {"labels": many}})[0]["field"]
        == "runtime_params.labels"
    )


@pytest.mark.parametrize("text", ["nodes: [", "a: b: c", "- x\n  - y: {"])
def test_unreadable_yaml_is_a_422_on_dag_spec(text):
    assert refused({"dag_spec": text})[0]["field"] == "dag_spec"


def test_yaml_that_is_not_a_mapping_or_a_body_that_is_not_an_object():
    assert refused({"dag_spec": "- 1\n- 2"})[0]["field"] == "dag_spec"
    assert refused([1, 2])[0]["field"] == ""
    assert refused({})[0]["field"] == "dag_spec"
