"""AIWorkload spec → Orion REST bodies (``orion_ray.operator.mapping``), purely."""

from __future__ import annotations

import copy

import pytest

from orion_ray.operator import mapping
from orion_ray.operator.mapping import SpecError
from orion_ray.serving_specs import DeploymentSpec, ReleaseSpec, ScaleRequest

EXAMPLE = {
    "replicas": 3,
    "image": "veritasstack/sentiment-api:v1.2.0",
    "resources": {"requests": {"memory": "4Gi", "cpu": "2"}, "limits": {"memory": "8Gi", "cpu": "4"}},
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 20, "targetCPU": 70},
    "healthCheck": {"path": "/health", "interval": "10s"},
}
TASK = {"workload": {"workload_type": "task", "function": "math:factorial", "args": [10]}}
PIPELINE = {"pipeline": {"dag_spec": "version: 1\n", "refs": {"a": "m:f"}}}


def test_the_example_is_a_deployment_orion_accepts():
    s = mapping.serving(EXAMPLE, name="sentiment-analysis-api", tenant="default")
    dep = DeploymentSpec.model_validate(s.deployment)  # what Orion's API would parse
    assert dep.model_id == "sentiment-analysis-api" and dep.tenant_id == "default"
    assert dep.cpus_per_replica == 2.0 and dep.replicas is None
    assert dep.autoscaling is not None
    assert (dep.autoscaling.min_replicas, dep.autoscaling.max_replicas) == (2, 20)
    assert dep.autoscaling.initial_replicas == 3
    assert s.version.startswith("r") and dep.version == s.version


def test_the_example_reports_every_field_it_cannot_apply():
    notes = " ".join(mapping.serving(EXAMPLE, name="x", tenant="t").notes)
    for field in ("image", "resources.memory", "healthCheck", "autoscaling.targetCPU"):
        assert field in notes


def test_the_spec_is_never_changed():
    spec = copy.deepcopy(EXAMPLE)
    mapping.serving(spec, name="x", tenant="t")
    assert spec == EXAMPLE
    task = copy.deepcopy(TASK)
    mapping.workload_body(task, tenant="t", key="k")
    assert task == TASK


def test_replicas_without_autoscaling_are_fixed():
    s = mapping.serving({"replicas": 2, "engine": "test"}, name="m", tenant="t")
    assert s.deployment["replicas"] == 2 and "autoscaling" not in s.deployment
    assert mapping.serving({"engine": "test"}, name="m", tenant="t").deployment["replicas"] == 1


def test_autoscaling_disabled_is_ignored():
    spec = {"replicas": 2, "autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 3}}
    assert mapping.serving(spec, name="m", tenant="t").deployment["replicas"] == 2


def test_initial_replicas_are_clamped_into_the_bounds():
    spec = {"replicas": 50, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}
    assert mapping.serving(spec, name="m", tenant="t").deployment["autoscaling"]["initial_replicas"] == 4


def test_autoscaling_min_above_max_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        mapping.serving(
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}, name="m", tenant="t"
        )
    assert e.value.field == "autoscaling.minReplicas"


@pytest.mark.parametrize("value,cpus", [("2", 2.0), (2, 2.0), ("500m", 0.5), ("0.25", 0.25), ("1500m", 1.5)])
def test_cpu_quantities(value, cpus):
    assert mapping.parse_cpu(value, "f") == cpus


@pytest.mark.parametrize("value", ["2Gi", "", "a", True, "-1"])
def test_bad_cpu_quantities_name_the_field(value):
    with pytest.raises(SpecError) as e:
        mapping.parse_cpu(value, "resources.requests.cpu")
    assert e.value.field == "resources.requests.cpu"


def test_limits_are_used_when_there_is_no_request():
    s = mapping.serving({"resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1}}}, name="m", tenant="t")
    assert s.deployment["cpus_per_replica"] == 1.0 and s.deployment["gpus_per_replica"] == 1.0


def test_model_engine_and_args_reach_the_deployment():
    spec = {"model": "chat", "engine": "cpu", "engineArgs": {"max_tokens": 8}, "version": "v2"}
    s = mapping.serving(spec, name="ignored", tenant="t")
    assert (s.model_id, s.version) == ("chat", "v2")
    assert s.deployment["engine"] == "cpu" and s.deployment["engine_args"] == {"max_tokens": 8}


def test_a_name_orion_cannot_use_as_a_model_id_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        mapping.serving({"replicas": 1}, name="Has_Upper", tenant="t")
    assert e.value.field == "model"


def test_the_version_changes_with_what_a_replica_runs_not_how_many():
    a = mapping.serving(EXAMPLE, name="m", tenant="t").version
    more = dict(EXAMPLE, replicas=5, autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 9})
    assert mapping.serving(more, name="m", tenant="t").version == a
    assert mapping.serving(dict(EXAMPLE, image="x:v2"), name="m", tenant="t").version != a
    other_cpu = dict(EXAMPLE, resources={"requests": {"cpu": "1"}})
    assert mapping.serving(other_cpu, name="m", tenant="t").version != a


def test_scale_bodies_are_what_orion_accepts():
    s = mapping.serving(EXAMPLE, name="m", tenant="t")
    body = mapping.scale_body(s.deployment)
    ScaleRequest.model_validate(body)
    assert "initial_replicas" not in body["autoscaling"] and body["version"] == s.version
    fixed = mapping.serving({"replicas": 2}, name="m", tenant="t")
    assert mapping.scale_body(fixed.deployment) == {"version": fixed.version, "replicas": 2}


# -- forms, tenants, keys -------------------------------------------------------------------------
def test_forms():
    assert mapping.form_of(EXAMPLE) == "serving"
    assert mapping.form_of(TASK) == "workload"
    assert mapping.form_of(PIPELINE) == "pipeline"
    assert mapping.form_of({**TASK, "tenant": "a", "priority": "high", "suspend": True}) == "workload"


@pytest.mark.parametrize(
    "spec,field",
    [({}, "workload"), ({**TASK, **PIPELINE}, "pipeline"), ({**TASK, "replicas": 2}, "replicas")],
)
def test_mixed_or_empty_forms_are_spec_errors(spec, field):
    with pytest.raises(SpecError) as e:
        mapping.form_of(spec)
    assert e.value.field == field


def test_managed_by():
    assert mapping.is_ours({}) and mapping.is_ours({"managedBy": mapping.CONTROLLER})
    assert not mapping.is_ours({"managedBy": "kueue.x-k8s.io/multikueue"})


def test_in_namespace_mode_the_namespace_is_the_tenant():
    assert mapping.tenant_of({}, "team-a", "namespace") == "team-a"
    assert mapping.tenant_of({"tenant": "team-a"}, "team-a", "namespace") == "team-a"
    with pytest.raises(SpecError) as e:  # a namespace's users cannot reach another tenant
        mapping.tenant_of({"tenant": "team-b"}, "team-a", "namespace")
    assert e.value.field == "tenant"


def test_in_spec_mode_the_spec_names_the_tenant():
    assert mapping.tenant_of({"tenant": "team-b"}, "team-a", "spec") == "team-b"
    assert mapping.tenant_of({}, "team-a", "spec") == "default"
    with pytest.raises(ValueError):
        mapping.tenant_of({}, "ns", "other")


def test_request_keys_come_from_the_uid():
    assert mapping.request_key("u-1") == "k8s-u-1"
    assert mapping.request_key("u-1", 2) == "k8s-u-1-2"


def test_a_workload_body_carries_tenant_key_and_priority():
    body = mapping.workload_body({**TASK, "priority": "high"}, tenant="team-a", key="k8s-u")
    assert body["metadata"] == {"tenant_id": "team-a", "request_id": "k8s-u"}
    assert body["priority"] == "high" and body["function"] == "math:factorial"


def test_a_workload_naming_another_tenant_is_refused():
    spec = {"workload": {**TASK["workload"], "metadata": {"tenant_id": "team-b"}}}
    with pytest.raises(SpecError) as e:
        mapping.workload_body(spec, tenant="team-a", key="k")
    assert e.value.field == "workload.metadata.tenant_id"


@pytest.mark.parametrize("kind", ["inference", None, "workflow"])
def test_only_tasks_and_jobs_are_batch_workloads(kind):
    with pytest.raises(SpecError):
        mapping.workload_body({"workload": {"workload_type": kind}}, tenant="t", key="k")


def test_a_pipeline_body_carries_the_submission_id_and_priority():
    body = mapping.pipeline_body({**PIPELINE, "priority": "low"}, key="k8s-u")
    assert body["runtime_params"] == {"submission_id": "k8s-u", "priority": "low"}
    assert body["refs"] == {"a": "m:f"}
    with pytest.raises(SpecError):
        mapping.pipeline_body({"pipeline": {"refs": {}}}, key="k")


# -- releases ------------------------------------------------------------------------------------
def _release(deployment: dict) -> tuple[dict, tuple]:
    return mapping.release_body({"deployment": deployment}, model_id="m", stable="r1", candidate="r2")


def test_replace_switches_at_once():
    body, _ = _release({})
    assert body == {"model_id": "m", "strategy": "weighted", "stable": "r2"}
    ReleaseSpec.model_validate(body)


def test_canary_in_the_originals_words():
    body, _ = _release(
        {
            "strategy": "canary",
            "canary": {"steps": [{"weight": 10, "duration": "5m"}, {"weight": 100}]},
            "success_criteria": {"error_rate": "< 1%", "latency_p95": "< 500ms"},
        }
    )
    spec = ReleaseSpec.model_validate(body)
    assert spec.strategy == "canary" and (spec.stable, spec.candidate) == ("r1", "r2")
    assert [s.weight for s in spec.steps] == [10, 100] and spec.steps[0].duration == 300
    assert spec.success_criteria.error_rate == 0.01 and spec.success_criteria.latency_p95 == 0.5


def test_blue_green_in_the_originals_words():
    body, notes = _release(
        {"strategy": "blue-green", "blue_green": {"rollback_on_error": False, "testing_period": "10m"}}
    )
    spec = ReleaseSpec.model_validate(body)
    assert spec.strategy == "blue-green" and spec.testing_period == 600
    assert spec.rollback_on_error is False and notes == ()  # the API takes it now


def test_rolling_is_orions_rolling_release_with_its_bounds():
    body, notes = _release(
        {"strategy": "rolling", "rolling": {"maxSurge": 1, "maxUnavailable": "25%", "progressDeadline": "2m"}}
    )
    assert body["rolling"] == {"maxSurge": 1, "maxUnavailable": "25%", "progressDeadline": "2m"}
    spec = ReleaseSpec.model_validate(body)
    assert spec.replaces_replicas() and not spec.steps and notes == ()
    r = spec.rolling
    assert (r.max_surge, r.max_unavailable, r.progress_deadline) == (1, "25%", 120)
    plain, _ = _release({"strategy": "rolling"})  # no settings: Orion's defaults (one at a time)
    assert plain["rolling"] == {} and ReleaseSpec.model_validate(plain).replaces_replicas()
    _, notes = _release({"strategy": "rolling", "canary": {"steps": [{"weight": 10}]}})
    assert any("canary.steps" in n for n in notes)  # steps do not apply: said, not dropped


@pytest.mark.parametrize(
    "rolling, field",
    [
        ({"maxSurge": "lots"}, "deployment.rolling.maxSurge"),
        ({"maxUnavailable": -1}, "deployment.rolling.maxUnavailable"),
        ({"maxSurge": "150%"}, "deployment.rolling.maxSurge"),
        ({"maxSurge": 0, "maxUnavailable": "0%"}, "deployment.rolling"),
        ({"maxSurge": 1, "surge": 2}, "deployment.rolling.surge"),
    ],
)
def test_bad_rolling_settings_are_spec_errors_naming_the_field(rolling, field):
    with pytest.raises(SpecError) as e:
        _release({"strategy": "rolling", "rolling": rolling})
    assert e.value.field == field


def test_a_rolling_candidate_starts_with_one_replica():
    assert mapping.candidate_size({"version": "r2", "replicas": 4})["replicas"] == 1
    auto = {"min_replicas": 0, "max_replicas": 5, "initial_replicas": 3}
    assert mapping.candidate_size({"autoscaling": auto})["autoscaling"]["initial_replicas"] == 1
    auto = {"min_replicas": 2, "max_replicas": 5}  # within the bounds it must keep
    assert mapping.candidate_size({"autoscaling": auto})["autoscaling"]["initial_replicas"] == 2


def test_canary_without_steps_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        _release({"strategy": "canary"})
    assert e.value.field == "deployment.canary.steps"


def test_the_first_version_needs_no_stable():
    body, _ = mapping.release_body(
        {"deployment": {"strategy": "canary"}}, model_id="m", stable=None, candidate="r1"
    )
    assert body["strategy"] == "weighted" and body["stable"] == "r1"


@pytest.mark.parametrize("value,rate", [("< 1%", 0.01), ("2%", 0.02), (0.05, 0.05), ("<= 0.1", 0.1)])
def test_error_rates(value, rate):
    assert mapping.parse_rate(value, "f") == pytest.approx(rate)


@pytest.mark.parametrize("value,out", [("< 500ms", "500ms"), ("2s", "2s"), (1.5, 1.5)])
def test_latencies(value, out):
    assert mapping.parse_latency(value, "f") == out


@pytest.mark.parametrize("bad", ["fast", "< x%"])
def test_bad_criteria_name_the_field(bad):
    with pytest.raises(SpecError):
        mapping.parse_rate(bad, "deployment.success_criteria.error_rate")
    with pytest.raises(SpecError):
        mapping.parse_latency(bad, "deployment.success_criteria.latency_p95")


def _examples():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "deploy" / "examples"
    return [yaml.safe_load(p.read_text()) for p in sorted(root.glob("*.yaml"))]


@pytest.mark.parametrize("obj", _examples(), ids=lambda o: o["metadata"]["name"])
def test_every_shipped_example_maps_to_bodies_orion_accepts(obj):
    from orion_ray.models import WorkloadSpec

    spec = obj["spec"]
    form = mapping.form_of(spec)
    if form == "serving":
        s = mapping.serving(spec, name=obj["metadata"]["name"], tenant="default")
        DeploymentSpec.model_validate(s.deployment)
        if spec.get("deployment"):
            body, _ = mapping.release_body(spec, model_id=s.model_id, stable="r0", candidate=s.version)
            ReleaseSpec.model_validate(body)
    elif form == "workload":
        WorkloadSpec.model_validate(mapping.workload_body(spec, tenant="default", key="k8s-u"))
