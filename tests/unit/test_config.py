"""``orion.yaml`` loading: defaults, validation, and the one error type."""

import pytest

from orion_ray.config import OrionConfig, load_config, orion_home
from orion_ray.errors import ConfigError


def test_no_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg == OrionConfig()
    assert cfg.orion.api.port == 8000 and cfg.orion.api.max_body_bytes == 1_048_576
    assert cfg.orion.scheduler.max_queue_size == 10_000


def test_contract_example_loads(tmp_path):
    f = tmp_path / "orion.yaml"
    f.write_text(
        "orion:\n  api: {port: 9000, max_body_bytes: 2048}\n"
        "  scheduler: {max_queue_size: 5, cycle_interval_ms: 20}\n"
        "  tenants:\n    - {id: research, weight: 2, quota: {gpu: 16}}\n"
    )
    cfg = load_config(str(f))
    assert (cfg.orion.api.port, cfg.orion.scheduler.max_queue_size) == (9000, 5)
    assert cfg.orion.tenants[0].id == "research" and cfg.orion.tenants[0].weight == 2


@pytest.mark.parametrize(
    "text, field",
    [
        ("orion:\n  api: {prot: 9000}\n", "orion.api.prot"),
        ("orion:\n  api: {port: 70000}\n", "orion.api.port"),
        ("orion:\n  scheduler: {max_queue_size: 0}\n", "orion.scheduler.max_queue_size"),
        ("orion:\n  store: {synchronous: off}\n", "orion.store.synchronous"),
        ("orion:\n  mystery: 1\n", "orion.mystery"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, text, field):
    f = tmp_path / "orion.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(f))
    assert field in [d["field"] for d in info.value.details]


@pytest.mark.parametrize("text", ["orion: [unclosed", None])
def test_unreadable_config_is_a_config_error(tmp_path, text):
    f = tmp_path / "orion.yaml"
    if text is not None:
        f.write_text(text)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(f))


def test_orion_home_and_store_path_follow_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_HOME", str(tmp_path))
    assert orion_home() == tmp_path
    assert OrionConfig().orion.store.resolved_path() == str(tmp_path / "orion.db")


# -- worker pools: typed in the model layer, validated at load ------------------------------------
def _load(tmp_path, text):
    f = tmp_path / "orion.yaml"
    f.write_text(text)
    return load_config(str(f))


@pytest.mark.parametrize(
    "pools, field",
    [
        ("[{name: p, resources: {GPU: -1}}]", "orion.worker_pools.0.resources"),
        ("[{name: p, instance_type: x9.huge}]", "orion.worker_pools.0.resources"),
        ("[{name: p, resources: {CPU: 1}, min_size: 3, max_size: 1}]", "orion.worker_pools.0.max_size"),
        (
            "[{name: p, resources: {CPU: 1}, autoscaling: {idle_time: 5x}}]",
            "orion.worker_pools.0.autoscaling",
        ),
        (
            "[{name: p, resources: {CPU: 1}, schedule: [{cron: '61 * * * *', duration: 1h, size: 1}]}]",
            "orion.worker_pools.0.schedule.0",
        ),
        ("[{name: p, resources: {CPU: 1}, scaling_policy: schedule}]", "orion.worker_pools.0.schedule"),
        ("[{name: p, resources: {CPU: 1}, max_szie: 3}]", "orion.worker_pools.0.max_szie"),
        ("[{name: p, resources: {CPU: 1}}, {name: p, resources: {CPU: 2}}]", "orion.worker_pools"),
    ],
)
def test_bad_worker_pools_are_refused_at_load_naming_the_field(tmp_path, pools, field):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"orion:\n  worker_pools: {pools}\n")
    assert e.value.status_code == 422
    assert field in [d["field"] for d in e.value.details], e.value.details


def test_bad_autoscaling_defaults_are_refused_at_load(tmp_path):
    for text in (
        "orion:\n  autoscaling: {target_cpu_utilization: 120}\n",
        "orion:\n  autoscaling: {interval_s: 0}\n",
    ):
        with pytest.raises(ConfigError) as e:
            _load(tmp_path, text)
        assert e.value.details[0]["field"] == "orion.autoscaling", e.value.details


def test_worker_pools_are_typed_and_survive_the_trip_to_an_actor(tmp_path):
    from orion_ray.autoscaler.pool_spec import node_type_of, parse_autoscale_pools
    from orion_ray.worker_pools import WorkerPool

    cfg = _load(
        tmp_path,
        "orion:\n  worker_pools:\n"
        "    - {name: a100, instance_type: p4d.24xlarge, scaling_policy: hybrid,\n"
        "       ray_node_type: gpu_a100, labels: {tier: 1},\n"
        "       schedule: [{cron: '0 9 * * 1-5', duration: 8h, size: 4}]}\n"
        "  autoscaling: {scale_up_cooldown: 30s, interval_s: 0.5}\n",
    )
    (pool,) = cfg.orion.worker_pools
    assert isinstance(pool, WorkerPool) and pool.node_type == "gpu_a100"
    assert pool.node_shape() == ({"CPU": 96.0, "GPU": 8.0}, "A100")
    assert pool.labels == {"tier": "1"}  # YAML's number, as label text
    # actors get the config as JSON and validate it again: the same pools come back
    again = OrionConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    (spec,) = parse_autoscale_pools(again.orion.worker_pools, again.orion.autoscaling)
    assert spec.labels == {"tier": "1", "orion.io/pool": "a100", "ray.io/accelerator-type": "A100"}
    assert spec.params.scale_up_cooldown_s == 30.0 and spec.schedule[0].size == 4
    assert node_type_of(again.orion.worker_pools) == {"a100": "gpu_a100"}


@pytest.mark.parametrize("path", ["cluster_configs/orion.yaml", "cluster_configs/aws/orion.yaml"])
def test_shipped_configs_load_with_typed_pools(path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(str(root / path))
    for pool in cfg.orion.worker_pools:
        assert pool.node_shape()[0], pool.name


def test_placement_policy_names_match_the_registry():
    # config.py lists the names so the model layer needs no import of the policy registry
    from orion_ray.config import PLACEMENT_POLICIES
    from orion_ray.policy.placement import POLICY_NAMES

    assert sorted(PLACEMENT_POLICIES) == sorted(POLICY_NAMES)
