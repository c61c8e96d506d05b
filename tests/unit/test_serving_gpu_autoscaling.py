"""Autoscaling a model on its GPUs' utilisation (NVML where a device reports) besides ongoing
requests: the pure sizing and hold, Serve's policy with a real ``AutoscalingContext``, the
replica's report with a fake probe, and the deployment options Serve takes."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from orion_ray.policy.autoscale_gpu import Hold, decide, replicas_for
from orion_ray.serving.deployer import GPU_POLICY, serve_options
from orion_ray.serving.gpu_policy import GpuUtilizationPolicy
from orion_ray.serving_specs import DeploymentSpec


def test_replicas_for_a_target_utilisation_as_the_hpa_sizes_them():
    assert replicas_for(2, [90, 90], 60) == 3  # 2 × 90 / 60
    assert replicas_for(3, [60, 60, 60], 60) == 3  # on target: as many
    assert replicas_for(4, [10, 20], 60) == 1  # idle GPUs: at least one
    assert replicas_for(2, [], 60) is None  # no device reports: the signal abstains
    assert replicas_for(2, [150.0, -1.0], 60) is None  # not a reading


def test_the_gpu_signal_only_adds_and_holds_what_it_added_for_the_downscale_delay():
    n, hold = decide(1, 3, lo=1, hi=5, now=0.0, hold=None, hold_s=60.0)
    assert n == 3 and hold == Hold(3, 60.0)
    n, hold = decide(1, 1, lo=1, hi=5, now=30.0, hold=hold, hold_s=60.0)  # a dip: held
    assert n == 3 and hold == Hold(3, 60.0)
    n, hold = decide(1, 1, lo=1, hi=5, now=61.0, hold=hold, hold_s=60.0)  # the hold ran out
    assert n == 1 and hold == Hold(1, 121.0)
    assert decide(4, 2, lo=1, hi=5, now=0.0, hold=None, hold_s=60.0)[0] == 4  # requests ask more
    assert decide(1, 9, lo=1, hi=5, now=0.0, hold=None, hold_s=60.0)[0] == 5  # within the bounds
    assert decide(2, None, lo=1, hi=5, now=0.0, hold=None, hold_s=60.0) == (2, None)


def _context(*, replicas: int, gpu: dict, state: dict | None = None, now: float = 1000.0):
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    dep = DeploymentID(name="LLMReplica", app_name="orion-llm-m--v1")
    ids = [ReplicaID(unique_id=f"r{i}", deployment_id=dep) for i in range(replicas)]
    config = AutoscalingConfig(
        min_replicas=1, max_replicas=6, target_ongoing_requests=2, downscale_delay_s=60
    )
    return AutoscalingContext(
        deployment_id=dep,
        deployment_name="LLMReplica",
        app_name="orion-llm-m--v1",
        current_num_replicas=replicas,
        target_num_replicas=replicas,
        running_replicas=ids,
        total_num_requests=0.0,  # idle by requests: the requests policy alone keeps the count
        total_queued_requests=0.0,
        aggregated_metrics={"gpu_utilization": {ids[i]: u for i, u in enumerate(gpu.values())}}
        if gpu
        else {},
        raw_metrics={},
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=6,
        policy_state=state or {},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=config,
    )


def test_serves_policy_raises_the_requests_decision_on_busy_gpus():
    policy = GpuUtilizationPolicy(target_gpu_utilization=50)
    n, state = policy(_context(replicas=2, gpu={"a": 100.0, "b": 80.0}))
    assert n == 4 and state["orion_gpu_hold"] == [4, 1060.0]  # ceil(2 × 90 / 50)
    n, _ = policy(_context(replicas=4, gpu={"a": 5.0, "b": 5.0, "c": 5.0, "d": 5.0}, state=state, now=1030.0))
    assert n == 4  # held through the dip
    n, _ = policy(_context(replicas=2, gpu={}))  # no device reports: Serve's own decision
    assert n <= 2
    with pytest.raises(ValueError):
        GpuUtilizationPolicy(target_gpu_utilization=0)


def test_a_metered_replica_reports_its_gpus_utilisation_or_nothing(monkeypatch):
    import ray

    from serve_apps.llm.replica import GpuMeteredReplica

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0, 1])
    seen = []
    replica = GpuMeteredReplica("test", {}, "m", "v1")
    replica.probe = lambda ids: seen.append(ids) or 72.5
    assert asyncio.run(replica.record_autoscaling_stats()) == {"gpu_utilization": 72.5}
    assert seen == [["0", "1"]]
    replica.probe = lambda ids: None  # a CPU node: no metric, Serve's requests policy alone
    assert asyncio.run(replica.record_autoscaling_stats()) == {}


def test_the_nvml_probe_answers_none_without_a_device():
    from serve_apps.llm.gpu_probe import nvml_utilization

    assert nvml_utilization([]) is None
    assert nvml_utilization(["0"]) is None  # this machine has no NVIDIA device


def test_the_deployment_options_name_the_policy_and_serve_takes_them():
    from serve_apps.llm.replica import build_replica_app

    spec = DeploymentSpec.model_validate(
        {"model_id": "m", "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_gpu_utilization": 60}}
    )
    opts = serve_options(spec)
    assert opts["autoscaling_config"]["policy"] == {
        "policy_function": GPU_POLICY,
        "policy_kwargs": {"target_gpu_utilization": 60.0},
    }
    app = build_replica_app("test", {}, "m", "v1", options=opts, gpu_metered=True)
    policy = app._bound_deployment._deployment_config.autoscaling_config.policy
    policy.serialize_policy()  # what Serve does before shipping it to its controller
    assert policy.get_policy() is GpuUtilizationPolicy
    plain = serve_options(
        DeploymentSpec.model_validate({"model_id": "m", "autoscaling": {"max_replicas": 2}})
    )
    assert "policy" not in plain["autoscaling_config"]  # Serve's default policy otherwise
    for bad in (0, 101, "busy"):
        with pytest.raises(ValidationError) as err:
            DeploymentSpec.model_validate({"model_id": "m", "autoscaling": {"target_gpu_utilization": bad}})
        assert "target_gpu_utilization" in str(err.value)
