"""Dispatch invariants on random regions and queues (orion_ray/policy/regions.py; seeded, pure):
a chosen region always passes every filter, a batch never hands out a GPU twice, ``decide`` and
``plan_dispatch`` agree on a single run, and nothing given is mutated."""

import copy
import random

import pytest

from benchmarks.regions_policy import make_regions, make_runs
from orion_ray.policy.regions import Blocklist, DispatchWeights, decide, plan_dispatch

SEEDS = range(12)


def world(seed, n_regions=6, n_runs=300):
    rng = random.Random(seed)
    regions = make_regions(n_regions, rng)
    runs = make_runs(n_runs, regions, rng)
    bl = Blocklist()
    for r in rng.sample(regions, 2):
        bl = bl.block(r.name, kind=rng.choice(("refused", "throttled")), gpu_type="H100", now=0.0)
    return regions, runs, bl


def passes_filters(run, r, bl, now):
    if run.region is not None and r.name != run.region:
        return False
    if r.state != "active" or (r.allowed_tenants and run.tenant_id not in r.allowed_tenants):
        return False
    if any(r.labels.get(k) != v for k, v in run.region_selector.items()):
        return False
    if run.gpus > 0 and run.gpu_type and not r.offers(run.gpu_type):
        return False
    return bl.blocked(r.name, run.gpu_type, now) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_a_chosen_region_passes_every_filter(seed):
    regions, runs, bl = world(seed)
    by_name = {r.name: r for r in regions}
    for d, run in zip(plan_dispatch(runs, regions, blocklist=bl, now=1.0), runs):
        if d.region is not None:
            assert passes_filters(run, by_name[d.region], bl, 1.0), (run, d)
        else:
            # nowhere: every region failed a filter or was full with a full queue
            assert d.ranked == ()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_batch_never_places_more_than_is_free(seed):
    regions, runs, bl = world(seed)
    w = DispatchWeights(queue_when_full=False)
    used: dict[tuple[str, str], float] = {}
    cpus: dict[str, float] = {}
    for d, run in zip(plan_dispatch(runs, regions, blocklist=bl, weights=w, now=1.0), runs):
        assert not d.queued
        if d.region is None:
            continue
        cpus[d.region] = cpus.get(d.region, 0.0) + run.cpus
        if run.gpus and run.gpu_type:
            key = (d.region, run.gpu_type)
            used[key] = used.get(key, 0.0) + run.gpus
    free = {r.name: r for r in regions}
    for (name, t), n in used.items():
        assert n <= free[name].free_gpus.get(t, 0.0) + 1e-9
    for name, n in cpus.items():
        assert n <= free[name].free_cpus + 1e-9


@pytest.mark.parametrize("seed", SEEDS)
def test_decide_and_a_batch_of_one_agree_and_inputs_are_untouched(seed):
    regions, runs, bl = world(seed, n_runs=60)
    before = (copy.deepcopy(regions), copy.deepcopy(runs), copy.deepcopy(bl))
    for run in runs:
        one = decide(run, regions, blocklist=bl, now=1.0)
        [batch] = plan_dispatch([run], regions, blocklist=bl, now=1.0, explain=True)
        assert (one.region, one.queued, one.ranked) == (batch.region, batch.queued, batch.ranked)
        assert set(one.reasons) >= {r.name for r in regions}  # a reason for every region
    assert (regions, runs, bl) == before


@pytest.mark.parametrize("seed", SEEDS)
def test_the_order_of_regions_does_not_change_a_decision(seed):
    regions, runs, bl = world(seed, n_runs=60)
    shuffled = regions[:]
    random.Random(seed).shuffle(shuffled)
    a = plan_dispatch(runs, regions, blocklist=bl, now=1.0)
    b = plan_dispatch(runs, shuffled, blocklist=bl, now=1.0)
    assert [(d.region, d.queued) for d in a] == [(d.region, d.queued) for d in b]
