"""The original design's configuration file loads verbatim and every key acts
(orion_ray/config_original.py; docs/configuration-original.md), or is refused with the reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from orion_ray.autoscaler.pool_spec import parse_autoscale_pools
from orion_ray.config import OrionConfig, load_config
from orion_ray.config_original import translate_original
from orion_ray.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "original_config.yaml"
POOLS = [
    {"name": "gpu", "instance_type": "p4d.24xlarge"},
    {"name": "cpu", "resources": {"CPU": 8}, "max_size": 4},
]


def _problems(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        translate_original(raw)
    assert err.value.status_code == 422
    return {d["field"]: d["problem"] for d in err.value.details}


def test_the_original_file_loads_verbatim_and_each_setting_takes_effect():
    config = load_config(str(FIXTURE))
    o = config.orion
    assert o.api.replicas == 3  # control_plane.replicas
    assert o.capacity.region == "us-east-1"  # control_plane.region
    assert o.scheduler.max_queue_size == 50_000  # queue.max_queue_size: 429 beyond it
    assert o.store.retention.workloads_days == 7.0  # queue.message_retention
    assert o.logging.level == "WARNING"  # monitoring.log_level
    assert (o.tracing.enabled, o.tracing.exporter) == (True, "otlp")  # monitoring.traces_backend: jaeger
    assert o.cost.model_dump(
        include={"enabled", "granularity", "metrics", "billing_period", "export_to"}
    ) == {
        "enabled": True,
        "granularity": "hourly",
        "metrics": ["gpu_hours", "cpu_hours", "memory_gb_hours", "tokens"],
        "billing_period": "monthly",
        "export_to": "s3://acme-billing/orion/",
    }
    # autoscaling: the bounds of the pool without its own, the parameters for every pool
    specs = {p.name: p for p in parse_autoscale_pools(o.worker_pools, o.autoscaling)}
    assert (specs["gpu-pool"].min_size, specs["gpu-pool"].max_size) == (2, 20)
    assert (specs["cpu-pool"].min_size, specs["cpu-pool"].max_size) == (1, 8)  # its own win
    params = specs["gpu-pool"].params
    assert params.target_cpu_utilization == 75.0  # target_utilization 0.75
    assert (params.scale_up_cooldown_s, params.scale_down_cooldown_s) == (60.0, 300.0)
    assert params.predictive_enabled and params.lookback_s == 14 * 86400
    # Orion's own section is read as before
    assert o.tenants[0].id == "research" and o.store.path == "/var/lib/orion/orion.db"


def test_every_key_of_the_fixture_is_accounted_for():
    raw = yaml.safe_load(FIXTURE.read_text())
    _, applied = translate_original(raw)
    fields = {a["field"] for a in applied}
    for block in ("control_plane", "queue", "monitoring", "autoscaling", "cost_tracking"):
        for key in raw[block]:
            assert f"{block}.{key}" in fields, f"{block}.{key} did not act"


def test_the_translation_leaves_its_input_alone():
    raw = yaml.safe_load(FIXTURE.read_text())
    before = yaml.safe_dump(raw)
    translate_original(raw)
    assert yaml.safe_dump(raw) == before


def test_queue_backends_other_than_the_store_are_refused_with_the_reason():
    problems = _problems({"queue": {"backend": "kafka"}})
    assert "Orion's queue is its store" in problems["queue.backend"]
    assert "kafka is not supported" in problems["queue.backend"]
    for backend in ("redis", "rabbitmq", "sqs"):
        assert "queue.backend" in _problems({"queue": {"backend": backend}})


def test_a_kafka_file_fails_to_load_with_422_naming_the_field(tmp_path):
    path = tmp_path / "orion.yaml"
    path.write_text("queue: {backend: kafka, max_queue_size: 10}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in err.value.message and err.value.details[0]["field"] == "queue.backend"


def test_postgres_queue_means_the_postgres_store():
    out, _ = translate_original({"queue": {"backend": "postgresql"}})
    assert out["orion"]["store"]["backend"] == "postgres"
    problems = _problems({"queue": {"backend": "sqlite"}, "orion": {"store": {"backend": "postgres"}}})
    assert "disagrees" in problems["queue.backend"]


def test_a_key_set_on_both_sides_must_agree():
    problems = _problems({"queue": {"max_queue_size": 10}, "orion": {"scheduler": {"max_queue_size": 20}}})
    assert "orion.scheduler.max_queue_size" in problems["queue.max_queue_size"]
    out, _ = translate_original(
        {"queue": {"max_queue_size": 20}, "orion": {"scheduler": {"max_queue_size": 20}}}
    )
    assert out["orion"]["scheduler"]["max_queue_size"] == 20


@pytest.mark.parametrize(
    "raw, field, words",
    [
        ({"control_plane": {"replicas": 0}}, "control_plane.replicas", "integer"),
        ({"control_plane": {"replicas": True}}, "control_plane.replicas", "integer"),
        ({"control_plane": {"region": "Mars"}}, "control_plane.region", "AWS region"),
        ({"control_plane": {"zone": "a"}}, "control_plane.zone", "unknown key"),
        ({"queue": {"message_retention": "a week"}}, "queue.message_retention", "7d"),
        ({"queue": {"max_queue_size": -1}}, "queue.max_queue_size", "integer"),
        ({"monitoring": {"metrics_backend": "datadog"}}, "monitoring.metrics_backend", "/metrics"),
        ({"monitoring": {"traces_backend": "xray"}}, "monitoring.traces_backend", "OTLP"),
        ({"monitoring": {"log_level": "LOUD"}}, "monitoring.log_level", "DEBUG"),
        ({"autoscaling": {"target_gpu_utilization": 0.9}}, "autoscaling.target_gpu_utilization", "gangs"),
        ({"autoscaling": {"warmup": 5}}, "autoscaling.warmup", "unknown key"),
        ({"autoscaling": {"min_instances": 2}}, "autoscaling.min_instances", "none is configured"),
        (
            {"autoscaling": {"min_instances": 5, "max_instances": 2}, "orion": {"worker_pools": POOLS}},
            "autoscaling.min_instances",
            "above",
        ),
        ({"cost_tracking": {"granularity": "per_second"}}, "cost_tracking.granularity", "hourly"),
        ({"cost_tracking": {"billing_period": "weekly"}}, "cost_tracking.billing_period", "monthly"),
        ({"cost_tracking": {"metrics": ["gpu_hours", "vibes"]}}, "cost_tracking.metrics", "gpu_hours"),
        ({"cost_tracking": {"export_to": "bigquery://x"}}, "cost_tracking.export_to", "s3://"),
        ({"cost_tracking": {"enabled": "yes please"}}, "cost_tracking.enabled", "boolean"),
        ({"queue": ["kafka"]}, "queue", "not a mapping"),
    ],
)
def test_values_that_cannot_be_honoured_are_refused_with_the_field(raw, field, words):
    problems = _problems(raw)
    assert words in problems[field], problems


def test_all_problems_are_reported_at_once():
    problems = _problems({"queue": {"backend": "kafka"}, "monitoring": {"log_level": "LOUD"}})
    assert {"queue.backend", "monitoring.log_level"} <= set(problems)


def test_traces_backends():
    for backend, want in (
        ("tempo", {"enabled": True, "exporter": "otlp"}),
        ("console", {"enabled": True, "exporter": "console"}),
        ("none", {"enabled": False}),
    ):
        out, _ = translate_original({"monitoring": {"traces_backend": backend}})
        assert out["orion"]["tracing"] == want


def test_region_also_names_a_joining_region():
    out, _ = translate_original(
        {"control_plane": {"region": "eu-west-1"}, "orion": {"region": {"control_plane": "http://cp:9000"}}}
    )
    assert out["orion"]["region"]["name"] == "eu-west-1"
    assert out["orion"]["capacity"]["region"] == "eu-west-1"


def test_autoscaling_bounds_fill_only_pools_without_their_own():
    out, applied = translate_original(
        {"autoscaling": {"min_instances": 1, "max_instances": 6}, "orion": {"worker_pools": POOLS}}
    )
    pools = OrionConfig.model_validate(out).orion.worker_pools
    assert [(p.min_size, p.max_size) for p in pools] == [(1, 6), (1, 4)]
    assert {
        "field": "autoscaling.max_instances",
        "setting": "orion.worker_pools.0.max_size",
        "value": 6,
    } in applied


def test_percent_target_stays_a_percentage():
    out, _ = translate_original({"autoscaling": {"target_utilization": 80}})
    assert out["orion"]["autoscaling"]["target_cpu_utilization"] == 80


def test_a_file_without_original_blocks_is_untouched(tmp_path):
    path = tmp_path / "orion.yaml"
    path.write_text("orion: {scheduler: {max_queue_size: 7}}\n")
    assert load_config(str(path)).orion.scheduler.max_queue_size == 7
    path.write_text("orion: {nonsense: 1}\n")
    with pytest.raises(ConfigError):  # Orion's own unknown keys are still refused
        load_config(str(path))


def test_log_level_reaches_the_actors_logger():
    """The actors' process set-up (log_format.setup_process, used by the scheduler; the autoscaler
    sets the same level) applies orion.logging.level to the root logger."""
    from orion_ray.log_format import configure_logging

    root = logging.getLogger("orion-test-level")
    configure_logging(
        OrionConfig.model_validate({"orion": {"logging": {"level": "ERROR"}}}).orion.logging, root=root
    )
    assert root.level == logging.ERROR


def test_api_replicas_reach_the_serve_deployment():
    from orion_ray.api.serve_app import build_api_app
    from orion_ray.cluster import api_store_options

    config = load_config(str(FIXTURE))
    options = api_store_options(config)
    assert options["replicas"] == 3
    # what `orion up` hands Serve (building the application starts nothing)
    app = build_api_app([], config.orion.api.max_body_bytes, replicas=options["replicas"])
    assert app._bound_deployment.num_replicas == 3


def test_max_queue_size_bounds_admission_with_429(tmp_path):
    """queue.max_queue_size is the bound the API replica's submissions are held to."""
    import time

    from orion_ray.cluster import api_store_options
    from orion_ray.errors import QueueFull
    from orion_ray.models import WorkloadSpec
    from orion_ray.scheduler.ingest import new_workload
    from orion_ray.store import SQLiteStore

    path = tmp_path / "orion.yaml"
    path.write_text(
        f"queue: {{backend: sqlite, max_queue_size: 2}}\norion: {{store: {{path: {tmp_path / 'o.db'}}}}}\n"
    )
    config = load_config(str(path))
    limit = api_store_options(config)["max_queue_size"]
    store = SQLiteStore(config.orion.store.resolved_path())
    spec = WorkloadSpec.model_validate({"workload_type": "task", "function": "m:f"})
    for _ in range(2):
        store.submit(new_workload(spec, "default", time.time()), who="t", max_queue_size=limit)
    with pytest.raises(QueueFull) as err:
        store.submit(new_workload(spec, "default", time.time()), who="t", max_queue_size=limit)
    assert err.value.status_code == 429
