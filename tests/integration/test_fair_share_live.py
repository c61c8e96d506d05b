"""Weighted fair share on a real local Ray, judged by the policy's own decisions.

The scheduler decides which tenant gets each GPU that frees up; how long Ray then takes to start the
process, or how long the machine lets the task run, is not the policy's doing. So the test reads the
sequence of admissions (every ``queued → starting`` transition, in the store's order) and checks that,
while both tenants keep far more work queued than the cluster can run, gold (weight 2) is admitted
twice as often as silver (weight 1). The window is counted in decisions, not seconds, so a slow or
busy machine only makes it take longer. This module has its own Orion: the fair-share state starts
empty, with no usage left over from other tests.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
import ray

from .conftest import start_orion, stop_orion

pytestmark = pytest.mark.integration

WARM = 16  # two turnovers of the 8 GPUs: the first fill is one cycle's interleaving
WINDOW = 150  # admissions judged (≈ 100 gold, 50 silver)


@pytest.fixture(scope="module")
def orion_fair(ray_cluster, tmp_path_factory):
    handle = start_orion(ray_cluster, str(tmp_path_factory.mktemp("store") / "orion.db"))
    ray.get(
        handle.actor.configure_tenants.remote(
            [{"id": "gold", "weight": 2}, {"id": "silver", "weight": 1}], {}, None, "test"
        ),
        timeout=30,
    )
    try:
        yield handle
    finally:
        stop_orion()


def _admissions(store_path: str) -> list[tuple[str, str, float]]:
    """(tenant, workload id, at) of every admission so far, in the order the scheduler made them."""
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(
            "SELECT w.tenant_id, t.workload_id, t.at FROM transitions t "
            "JOIN workloads w ON w.workload_id = t.workload_id "
            "WHERE t.status = 'starting' ORDER BY t.id"
        ).fetchall()
    finally:
        db.close()


@pytest.mark.timeout(900)
def test_fair_share_admits_by_weight_under_saturation(orion_fair):
    orion = orion_fair
    spec = {
        "workload_type": "task",
        "function": "tests.integration.helpers:sleep_then",
        "args": [1.5],
        "resources": {"cpu": 0.1, "gpu": 1},
    }
    ids: dict[str, list[str]] = {"gold": [], "silver": []}
    for _ in range(200):  # interleaved, so submission order favours no one
        for t in ids:
            ids[t].append(orion.submit(spec, t))
    deadline = time.time() + 780
    seen: list[tuple[str, str, float]] = []
    while len(seen) < WARM + WINDOW:
        assert time.time() < deadline, f"only {len(seen)} admissions so far"
        time.sleep(2.0)
        seen = _admissions(orion.store_path)
    window = seen[WARM : WARM + WINDOW]
    admitted = {t: sum(1 for tenant, _, _ in window if tenant == t) for t in ids}
    # saturated throughout: each tenant still had work queued when the window closed
    admitted_by_end = {t: len({w for tenant, w, _ in seen if tenant == t}) for t in ids}
    assert all(admitted_by_end[t] < len(ids[t]) for t in ids), admitted_by_end
    ratio = admitted["gold"] / max(admitted["silver"], 1)
    span = window[-1][2] - window[0][2]
    print(f"admissions over {span:.0f}s: {admitted} ratio {ratio:.2f}")
    assert 1.8 <= ratio <= 2.2, admitted
    # the rest is stopped with the module's Orion (its actors and groups are removed)
