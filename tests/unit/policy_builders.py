"""Builders for small explicit policy scenarios: nodes, tenants, candidates, running work."""

from __future__ import annotations

import itertools

from orion_ray.policy import NodeView
from orion_ray.policy.admission import Candidate, PolicySettings, Running
from orion_ray.policy.fairshare import FairShare
from orion_ray.policy.live_placement import Held, LivePlacer
from orion_ray.policy.placement import get_policy
from orion_ray.policy.quota import TenantQuota, demand_of

_seq = itertools.count(1)
LABEL = "ray.io/accelerator-type"


def gpu_node(nid: str, gpus: int = 4, cpu: float = 16, gpu_type: str = "H100") -> NodeView:
    total = {"CPU": float(cpu), "GPU": float(gpus)}
    return NodeView(nid, dict(total), total, {LABEL: gpu_type})


def tenant(tid: str, weight: float = 1.0, cohort=None, **limits) -> TenantQuota:
    return TenantQuota(
        tid,
        weight,
        limits.get("quota", {}),
        limits.get("borrowing_limit", {}),
        limits.get("lending_limit", {}),
        cohort,
    )


def settings(*tenants: TenantQuota, **kw) -> PolicySettings:
    return PolicySettings(tenants={t.tenant_id: t for t in tenants}, **kw)


def cand(
    wid: str,
    tenant: str = "a",
    gpus: float = 1,
    n: int = 1,
    rank: int = 2,
    queued_since: float = 0.0,
    deadline=None,
    runtime_s=None,
    gpu_type=None,
    strategy: str = "PACK",
    cpu: float = 1,
) -> Candidate:
    bundles = [{"CPU": float(cpu), "GPU": float(gpus)} if gpus else {"CPU": float(cpu)}] * n
    types = [gpu_type] * n
    return Candidate(
        wid,
        tenant,
        rank,
        next(_seq),
        bundles,
        types,
        strategy,
        demand_of(bundles, types),
        queued_since,
        deadline,
        runtime_s,
    )


def running(
    wid: str,
    placer: LivePlacer,
    tenant: str = "a",
    gpus: float = 1,
    n: int = 1,
    rank: int = 2,
    started_at: float = 0.0,
    expected_end=None,
    preemptible: bool = True,
    cpu: float = 1,
) -> Running:
    """A running workload, placed (and committed) on ``placer`` by the engine."""
    bundles = [{"CPU": float(cpu), "GPU": float(gpus)} if gpus else {"CPU": float(cpu)}] * n
    held = placer.place(bundles, [None] * n, "PACK")
    assert held is not None, "the scenario's running work must fit"
    placer.commit(held)
    return Running(
        wid, tenant, rank, demand_of(bundles, [None] * n), held, started_at, expected_end, preemptible
    )


def placer(*nodes: NodeView) -> LivePlacer:
    return LivePlacer(get_policy("orion"), list(nodes), [])


def capacity(p: LivePlacer) -> dict:
    out = {"cpu": 0.0, "gpu": 0.0}
    for n in p.nodes:
        out["cpu"] += n.total.get("CPU", 0.0)
        out["gpu"] += n.total.get("GPU", 0.0)
    return out


def fair(half_life_s: float = 0.0) -> FairShare:
    return FairShare(half_life_s)


__all__ = ["gpu_node", "tenant", "settings", "cand", "running", "placer", "capacity", "fair", "Held"]
