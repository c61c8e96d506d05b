"""The workload spec: what is accepted, what is refused, and how resources become Ray bundles."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from orion_ray.models import Placement, Priority, Resources, Workload, WorkloadSpec, iso, parse_memory
from orion_ray.status import Status


def task(**fields):
    return WorkloadSpec.model_validate({"workload_type": "task", "function": "pkg.mod:fn", **fields})


def job(**fields):
    return WorkloadSpec.model_validate({"workload_type": "job", "entrypoint": "echo hi", **fields})


def refused(spec: dict) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate(spec)
    return info.value.errors()


# -- valid specs -------------------------------------------------------------------------------
def test_minimal_task_has_contract_defaults():
    s = task()
    assert s.priority is Priority.NORMAL
    assert s.placement is Placement.PACK
    assert s.max_retries == 0 and s.preemptible is True
    assert s.args == [] and s.kwargs == {}
    assert s.metadata.tenant_id is None and s.metadata.request_id is None


def test_full_task_from_the_contract_example():
    s = task(
        args=[1, "a"],
        kwargs={"k": 2},
        runtime_env={"pip": []},
        priority="high",
        resources={"cpu": 2, "gpu": 1, "memory": "8Gi", "gpu_type": "A100"},
        placement="strict_spread",
        timeout_s=3600,
        max_retries=2,
        preemptible=False,
        deadline=(datetime.now(timezone.utc) + timedelta(days=1)).isoformat(),
        metadata={"tenant_id": "customer-123", "request_id": "req-abc-456", "labels": {"project": "xs"}},
    )
    assert s.priority is Priority.HIGH
    assert s.placement.ray_strategy == "STRICT_SPREAD"
    assert s.resources.memory == 8 * 2**30
    assert s.metadata.labels == {"project": "xs"}


def test_job_with_gang():
    s = job(bundles=[{"cpu": 8, "gpu": 4}, {"cpu": 8, "gpu": 4}], placement="spread")
    assert [b.ray_bundle() for b in s.gang()] == [{"CPU": 8.0, "GPU": 4.0}] * 2


# -- refusals ----------------------------------------------------------------------------------
def test_unknown_top_level_field_refused():
    errors = refused({"workload_type": "task", "function": "a:b", "bogus": 1})
    assert errors[0]["type"] == "extra_forbidden" and errors[0]["loc"] == ("bogus",)


@pytest.mark.parametrize("where", ["resources", "metadata"])
def test_unknown_nested_field_refused(where):
    errors = refused({"workload_type": "task", "function": "a:b", where: {"cpus": 1}})
    assert errors[0]["loc"] == (where, "cpus")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"workload_type": "task"}, "needs 'function'"),
        ({"workload_type": "job"}, "needs 'entrypoint'"),
        ({"workload_type": "task", "function": "a:b", "entrypoint": "ls"}, "belongs to job"),
        ({"workload_type": "job", "entrypoint": "ls", "function": "a:b"}, "belong to task"),
        ({"workload_type": "job", "entrypoint": "ls", "args": [1]}, "belong to task"),
        (
            {"workload_type": "task", "function": "a:b", "resources": {"cpu": 1}, "bundles": [{"cpu": 1}]},
            "not both",
        ),
    ],
)
def test_kind_and_shape_refusals(spec, message):
    errors = refused(spec)
    assert message in errors[0]["msg"]


@pytest.mark.parametrize("function", ["not a path", "pkg.mod", ":fn", "pkg.mod:", "1pkg:fn"])
def test_function_must_be_module_colon_callable(function):
    refused({"workload_type": "task", "function": function})


@pytest.mark.parametrize("kind", ["workflow", "inference_v9", "", None])
def test_unknown_workload_type_refused(kind):
    errors = refused({"workload_type": kind, "function": "a:b"})
    assert errors[0]["loc"] == ("workload_type",)


def test_missing_workload_type_refused():
    errors = refused({"function": "a:b"})
    assert errors[0]["type"] == "missing"


@pytest.mark.parametrize("gpu", [0.5, 0.25, 1, 2, 8])
def test_gpu_fraction_below_one_or_whole_accepted(gpu):
    assert Resources(gpu=gpu).gpu == gpu


@pytest.mark.parametrize("gpu", [1.5, 2.25, -1, 257, float("nan"), float("inf")])
def test_gpu_refused(gpu):
    with pytest.raises(ValidationError) as info:
        Resources(gpu=gpu)
    assert info.value.errors()[0]["loc"] == ("gpu",)


@pytest.mark.parametrize("cpu", [-0.5, -1, 4097, 1e12, float("inf"), float("nan")])
def test_cpu_refused(cpu):
    with pytest.raises(ValidationError):
        Resources(cpu=cpu)


def test_empty_bundle_refused():
    with pytest.raises(ValidationError, match="some resource"):
        Resources(cpu=0, gpu=0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8Gi", 8 * 2**30),
        ("8GiB", 8 * 2**30),
        ("512M", 512 * 10**6),
        ("1.5GB", 1_500_000_000),
        ("2Ki", 2048),
        ("1Ti", 2**40),
        ("100", 100),
        (" 4 mi ", 4 * 2**20),
        (1024, 1024),
    ],
)
def test_memory_units(text, expected):
    assert parse_memory(text) == expected
    assert Resources(memory=text).memory == expected


@pytest.mark.parametrize("bad", ["lots", "8XB", "-1Gi", "1e3", "8 G i", "", "65Ti", -5, 1.5, True, [1]])
def test_bad_memory_refused(bad):
    with pytest.raises(ValidationError):
        Resources(memory=bad)


@pytest.mark.parametrize("custom", [{"CPU": 1}, {"bad name!": 1}, {"accel": -1}, {"accel": 2e6}])
def test_bad_custom_resource_refused(custom):
    with pytest.raises(ValidationError):
        Resources(custom=custom)


def test_bundle_limits():
    refused({"workload_type": "task", "function": "a:b", "bundles": []})
    refused({"workload_type": "task", "function": "a:b", "bundles": [{"cpu": 1}] * 1025})


@pytest.mark.parametrize(
    "field, value",
    [
        ("timeout_s", 0),
        ("timeout_s", -1),
        ("max_retries", -1),
        ("max_retries", 101),
        ("priority", "urgent"),
        ("placement", "scatter"),
    ],
)
def test_out_of_range_scalars_refused(field, value):
    errors = refused({"workload_type": "task", "function": "a:b", field: value})
    assert errors[0]["loc"] == (field,)


# -- deadlines ---------------------------------------------------------------------------------
def test_deadline_in_the_past_refused():
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    errors = refused({"workload_type": "task", "function": "a:b", "deadline": past})
    assert "deadline is in the past" in errors[0]["msg"]


def test_naive_past_deadline_is_read_as_utc_and_refused():
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    refused({"workload_type": "task", "function": "a:b", "deadline": past})


def test_stored_spec_with_past_deadline_still_loads():
    text = task(deadline=(datetime.now(timezone.utc) + timedelta(days=1)).isoformat()).model_dump_json()
    past = text.replace(text.split('"deadline":"')[1].split('"')[0], "2001-01-01T00:00:00Z")
    with pytest.raises(ValidationError):
        WorkloadSpec.model_validate_json(past)
    loaded = WorkloadSpec.model_validate_json(past, context={"stored": True})
    assert loaded.deadline == datetime(2001, 1, 1, tzinfo=timezone.utc)


# -- bundles, gangs, priorities ----------------------------------------------------------------
def test_ray_bundle_uses_ray_names_and_drops_zeros():
    r = Resources(cpu=2, gpu=0.5, memory="1Gi", custom={"accel": 2, "unused": 0})
    assert r.ray_bundle() == {"CPU": 2.0, "GPU": 0.5, "memory": float(2**30), "accel": 2.0}
    assert Resources(cpu=0, custom={"x": 1}).ray_bundle() == {"x": 1.0}


def test_gang_default_bundle_is_one_cpu():
    assert [b.ray_bundle() for b in task().gang()] == [{"CPU": 1.0}]
    assert [b.ray_bundle() for b in task(resources={"gpu": 1}).gang()] == [{"CPU": 1.0, "GPU": 1.0}]


def test_priority_ranks_highest_first():
    order = ["critical", "high", "normal", "low", "best_effort"]
    assert [Priority(p).rank for p in order] == [0, 1, 2, 3, 4]


def test_fingerprint_ignores_how_a_value_was_written():
    assert task(resources={"memory": "1Gi"}).fingerprint() == task(resources={"memory": 2**30}).fingerprint()
    assert task(priority="high").fingerprint() != task().fingerprint()


# -- the stored record ---------------------------------------------------------------------------
def test_public_view_has_contract_fields():
    w = Workload(
        workload_id="wl-1",
        tenant_id="t",
        spec=task(metadata={"request_id": "r"}),
        status=Status.COMPLETED,
        submitted_at=100.0,
        started_at=101.0,
        finished_at=103.5,
        result={"x": 1},
    )
    out = w.public(history=[])
    for key in (
        "workload_id",
        "status",
        "workload_type",
        "tenant_id",
        "priority",
        "attempt",
        "submitted_at",
        "started_at",
        "finished_at",
        "execution_time_ms",
        "worker_id",
        "placement",
        "result",
        "error",
    ):
        assert key in out
    assert out["status"] == "completed" and out["workload_type"] == "task"
    assert out["execution_time_ms"] == 2500
    assert out["submitted_at"] == "1970-01-01T00:01:40Z"
    assert out["request_id"] == "r" and out["history"] == []


def test_public_view_without_finish_has_no_execution_time():
    w = Workload(
        workload_id="wl-1",
        tenant_id="t",
        spec=task(),
        status=Status.RUNNING,
        submitted_at=1.0,
        started_at=2.0,
    )
    assert w.public()["execution_time_ms"] is None
    assert "history" not in w.public()
    assert iso(None) is None
