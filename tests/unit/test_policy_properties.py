"""Property tests of the policy (seeded random loops, as the placement properties are).

Over random clusters, tenants, quotas, classes and queues, cycle after cycle with preemptions carried
out: admission never takes a tenant past nominal quota plus borrowing limit, a workload is never
preempted for one of a lower class, and no two workloads preempt each other in a loop.
"""

import random

import pytest

from orion_ray.policy.admission import Running, plan_cycle
from orion_ray.policy.quota import QuotaBook

from .policy_builders import cand, capacity, fair, gpu_node, placer, settings, tenant


def scenario(rng: random.Random):
    nodes = [gpu_node(f"n{i}", gpus=rng.choice([1, 2, 4, 8]), cpu=64) for i in range(rng.randint(1, 4))]
    tenants = []
    for t in "abcd"[: rng.randint(2, 4)]:
        limits = {}
        if rng.random() < 0.8:
            limits["quota"] = {"gpu": rng.choice([0, 1, 2, 4])}
            if rng.random() < 0.5:
                limits["borrowing_limit"] = {"gpu": rng.choice([0, 1, 2])}
            if rng.random() < 0.3:
                limits["lending_limit"] = {"gpu": rng.choice([0, 1])}
        tenants.append(tenant(t, weight=rng.choice([1, 2, 3]), cohort=rng.choice([None, "x"]), **limits))
    return nodes, settings(*tenants, min_runtime_s=rng.choice([0, 0, 5]))


@pytest.mark.parametrize("seed", range(40))
def test_quota_class_and_no_preemption_loops(seed):
    rng = random.Random(seed)
    nodes, st = scenario(rng)
    tenants = list(st.tenants)
    queue = [
        cand(
            f"w{i}",
            rng.choice(tenants),
            gpus=rng.choice([0.5, 1, 1, 2]),
            n=rng.choice([1, 1, 2]),
            rank=rng.randint(0, 4),
        )
        for i in range(25)
    ]
    by_id = {c.workload_id: c for c in queue}
    runs: dict[str, Running] = {}
    preempted_by: set[tuple[str, str]] = set()
    fs = fair(rng.choice([0, 30]))
    now = 0.0
    for _ in range(12):
        now += rng.choice([1, 10])
        p = placer(*nodes)
        for r in runs.values():
            p.commit(r.held)
        waiting = [c for c in queue if c.workload_id not in runs]
        before = QuotaBook(st.tenants, _usage(runs.values()))
        pl = plan_cycle(p, waiting, list(runs.values()), st, fs, capacity(p), now)
        pl.apply_fair_share(fs)  # planning leaves the fair share alone; applying charges it
        # quota: what is admitted plus what ran stays within nominal + borrowing limit
        book = before.copy()
        for c, _ in pl.admitted:
            book.add(c.tenant, c.demand)
        for t, q in st.tenants.items():
            for r, nominal in q.quota.items():
                limit = q.borrowing_limit.get(r)
                newly = sum(c.demand.get(r, 0) for c, _ in pl.admitted if c.tenant == t)
                if limit is not None and newly:
                    assert book.usage[t][r] <= nominal + limit + 1e-9, (t, r)
        for victim, for_ in pl.preempt:
            assert runs[victim].rank >= by_id[for_].rank  # never a higher class for a lower one
            assert (for_, victim) not in preempted_by, "two workloads preempted each other"
            preempted_by.add((victim, for_))
            del runs[victim]  # stopped and back in the queue
        for c, held in pl.admitted:
            runs[c.workload_id] = Running(c.workload_id, c.tenant, c.rank, c.demand, held, now)
        for wid in [w for w in runs if rng.random() < 0.15]:  # some work ends
            del runs[wid]


def _usage(runs):
    out = {}
    for r in runs:
        u = out.setdefault(r.tenant, {})
        for k, v in r.demand.items():
            u[k] = u.get(k, 0.0) + v
    return out
