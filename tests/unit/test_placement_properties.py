"""Property tests of the placement engine (seeded random loops; no extra test dependency).

Whatever the policy, strategy and request mix: a plan never puts a GPU above 1.0 allocated nor a
node's CPU or memory below zero, honours GPU types and strategies, is all-or-nothing, and leaves the
snapshot it was given untouched. The simulator's cached fast path decides exactly like the pure API.
"""

import copy
import random

import pytest

from orion_ray.policy.placement import (
    POLICY_NAMES,
    BundleRequest,
    ClusterSnapshot,
    NodeState,
    PlacementSession,
    apply,
    get_policy,
)
from orion_ray.policy.placement.arrays import ClusterArrays, Req

TYPES = ["T4", "V100", "A10"]
FRACTIONS = [0.05, 0.1, 0.25, 0.3, 0.46, 0.5, 0.65, 0.81, 1.0]


def random_cluster(rng: random.Random, n: int) -> ClusterSnapshot:
    nodes = []
    for i in range(n):
        gpus = rng.choice([0, 1, 2, 4, 8])
        free = [rng.choice([1.0, 1.0, 0.5, 0.19, 0.0, 0.7]) for _ in range(gpus)]
        nodes.append(
            NodeState(
                f"n{i}",
                rng.choice([2, 8, 16, 64]),
                rng.choice([8, 64, 256]),
                rng.choice(TYPES) if gpus else None,
                free,
            )
        )
    return ClusterSnapshot(nodes)


def random_bundle(rng: random.Random) -> BundleRequest:
    kind = rng.random()
    types = frozenset(rng.sample(TYPES, rng.randint(1, 2))) if rng.random() < 0.3 else None
    cpu, mem = rng.choice([0.5, 1, 4, 12]), rng.choice([1, 8, 32])
    if kind < 0.2:
        return BundleRequest(cpu=cpu, mem=mem)
    if kind < 0.6:
        return BundleRequest(cpu=cpu, mem=mem, num_gpu=1, gpu_fraction=rng.choice(FRACTIONS), gpu_types=types)
    return BundleRequest(cpu=cpu, mem=mem, num_gpu=rng.choice([1, 2, 4]), gpu_types=types)


def check_invariants(snap: ClusterSnapshot) -> None:
    for n in snap.nodes:
        assert n.cpu_free >= -1e-9 and n.mem_free >= -1e-9, n
        assert all(-1e-9 <= g <= 1.0 + 1e-9 for g in n.gpu_free), n


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_random_gangs_never_overallocate(name):
    rng = random.Random(hash(name) % 1000)
    for trial in range(40):
        snap = random_cluster(rng, rng.randint(1, 6))
        policy = get_policy(name, seed=trial)
        for _ in range(8):
            bundles = [random_bundle(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
            strategy = rng.choice(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
            before = copy.deepcopy(snap)
            plan = policy.place(snap, bundles, strategy)
            assert snap == before, "place() must not mutate its snapshot"
            if plan is None:
                continue
            assert len(plan) == len(bundles)
            nodes = [p.node_id for p in plan]
            if strategy == "STRICT_PACK":
                assert len(set(nodes)) == 1
            if strategy == "STRICT_SPREAD":
                assert len(set(nodes)) == len(nodes)
            for p, b in zip(plan, bundles):
                assert len(p.gpu_indices) == b.num_gpu
                if b.num_gpu and b.gpu_types is not None:
                    assert snap.node(p.node_id).gpu_type in b.gpu_types
            snap = apply(snap, plan, bundles)  # raises if any bundle does not fit
            check_invariants(snap)


def test_gang_failure_leaves_no_partial_reservation():
    rng = random.Random(3)
    policy = get_policy("orion")
    for _ in range(100):
        snap = random_cluster(rng, 3)
        bundles = [random_bundle(rng) for _ in range(4)]
        plan = policy.place(snap, bundles, "STRICT_SPREAD")
        if plan is None:
            # Each bundle alone may fit, but never some of them placed and others not.
            assert policy.place(snap, bundles, "STRICT_SPREAD") is None
        else:
            check_invariants(apply(snap, plan, bundles))


@pytest.mark.parametrize("name", [p for p in POLICY_NAMES if p != "gpu_clustering"])
def test_session_fast_path_matches_pure_api(name):
    """The simulator's cached session makes the same decisions as place() + apply() on snapshots.
    (gpu_clustering is left out: it keeps per-node history that snapshots do not carry.)"""
    rng = random.Random(11)
    snap = random_cluster(rng, 12)
    reqs = [random_bundle(rng) for _ in range(150)]
    pure, fast = get_policy(name, seed=5), get_policy(name, seed=5)
    session = PlacementSession(fast, ClusterArrays.from_snapshot(snap))
    for b in reqs:
        pure.observe(b)
        fast.observe(b)
        plan = pure.place(snap, [b])
        choice = session.place(Req.from_bundle(b))
        if plan is None:
            assert choice is None
            continue
        assert choice is not None
        assert session.arr.node_ids[choice[0]] == plan[0].node_id
        assert tuple(choice[1]) == plan[0].gpu_indices
        snap = apply(snap, plan, [b])
        session.commit(choice, Req.from_bundle(b))
        check_invariants(snap)


def assert_same_state(a: ClusterSnapshot, b: ClusterSnapshot) -> None:
    for x, y in zip(a.nodes, b.nodes, strict=True):
        assert (x.node_id, x.gpu_type) == (y.node_id, y.gpu_type)
        assert x.cpu_free == pytest.approx(y.cpu_free) and x.mem_free == pytest.approx(y.mem_free)
        assert x.gpu_free == pytest.approx(y.gpu_free)


@pytest.mark.parametrize("name", ["orion", "fgd", "best_fit"])
def test_session_with_public_types_matches_place_and_apply(name):
    """One scheduling cycle through a session gives the plans place() + apply() would."""
    rng = random.Random(21)
    snap = random_cluster(rng, 10)
    original = copy.deepcopy(snap)
    session = PlacementSession.from_snapshot(get_policy(name, seed=2), snap)
    pure = get_policy(name, seed=2)
    for _ in range(60):
        bundles = [random_bundle(rng) for _ in range(rng.choice([1, 2]))]
        strategy = rng.choice(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
        plan = pure.place(snap, bundles, strategy)
        assert session.place_bundles(bundles, strategy) == plan
        if plan is not None:
            snap = apply(snap, plan, bundles)
            session.commit_bundles(plan, bundles)
            assert_same_state(session.snapshot(), snap)
    assert original == copy.deepcopy(original)  # the session worked on its own copy


def test_session_commit_rejects_a_stale_plan():
    snap = ClusterSnapshot([NodeState("a", 8, 8, "T4", [1.0])])
    session = PlacementSession.from_snapshot(get_policy("orion"), snap)
    b = [BundleRequest(cpu=1, mem=1, num_gpu=1, gpu_fraction=0.6)]
    plan = session.place_bundles(b)
    session.commit_bundles(plan, b)
    with pytest.raises(ValueError):
        session.commit_bundles(plan, b)  # 0.4 left: the same plan no longer fits
    assert session.snapshot().nodes[0].gpu_free[0] == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("live", [False, True])
def test_gangs_through_the_score_cache_decide_like_uncached_gangs(seed, live):
    """Gangs, every strategy, through one cache shared by the cluster and its copies (what the live
    placer keeps across cycles), with commits and copies in between: the same choices as scoring
    every bundle from scratch."""
    from orion_ray.policy.placement.engine import ScoreCache, place_gang

    rng = random.Random(seed)
    for name in ("orion", "fgd", "best_fit"):
        policy = get_policy(name, seed=seed)
        arr = ClusterArrays.from_snapshot(random_cluster(rng, rng.randint(3, 30)))
        arr.runtime_picks_shared_gpu = live
        cache = ScoreCache()
        for _ in range(40):
            reqs = [Req.from_bundle(random_bundle(rng))] * rng.choice([1, 2, 3, 4])
            strategy = rng.choice(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
            target = arr if rng.random() < 0.7 else arr.copy()  # a what-if copy now and then
            want = place_gang(policy, target, reqs, strategy)
            assert place_gang(policy, target, reqs, strategy, cache) == want, (name, strategy)
            if want is not None and target is arr:
                for (node, gpus), r in zip(want, reqs):
                    arr.commit(node, gpus, r)
