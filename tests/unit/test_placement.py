"""Pure GPU placement engine: whole, shared and multi-GPU bundles, gangs, types, CPU/memory."""

import copy
import subprocess
import sys

import pytest

from orion_ray.policy.placement import (
    POLICY_NAMES,
    BundlePlacement,
    BundleRequest,
    ClusterSnapshot,
    NodeState,
    apply,
    get_policy,
)
from orion_ray.policy.placement.arrays import ClusterArrays, Req
from orion_ray.policy.placement.frag import TypicalPods, frag_amount

ALL = list(POLICY_NAMES)
DETERMINISTIC = [p for p in ALL if p != "random"]


def node(nid, gpus=(1.0,), cpu=32.0, mem=128.0, gtype="T4"):
    return NodeState(nid, cpu, mem, gtype if gpus else None, list(gpus))


def snap(*nodes):
    return ClusterSnapshot(list(nodes))


def gpu_req(n=1, frac=1.0, cpu=1.0, mem=1.0, types=None):
    return BundleRequest(cpu=cpu, mem=mem, num_gpu=n, gpu_fraction=frac, gpu_types=types)


# -- purity --------------------------------------------------------------------------------------
def test_placement_and_sim_import_no_heavy_dependency():
    code = (
        "import sys, orion_ray.policy.placement, orion_ray.sim, orion_ray.sim.cli\n"
        "bad = [m for m in ('ray', 'fastapi', 'boto3', 'kubernetes', 'starlette') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- request validation --------------------------------------------------------------------------
def test_request_validation():
    with pytest.raises(ValueError):
        BundleRequest(cpu=1, num_gpu=2, gpu_fraction=0.5)  # shared GPU spans one GPU only
    with pytest.raises(ValueError):
        BundleRequest(cpu=1, num_gpu=1, gpu_fraction=0.0)
    with pytest.raises(ValueError):
        BundleRequest(cpu=-1)
    assert BundleRequest(cpu=1, num_gpu=1, gpu_fraction=0.5, gpu_types={"T4"}).gpu_types == frozenset({"T4"})


def test_unknown_policy_and_strategy():
    with pytest.raises(ValueError):
        get_policy("no-such-policy")
    with pytest.raises(ValueError):
        get_policy("best_fit").place(snap(node("a")), [gpu_req(), gpu_req()], "DIAGONAL")


# -- single bundles ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_whole_gpu(name):
    plan = get_policy(name).place(snap(node("a", (1.0, 1.0))), [gpu_req()])
    assert plan is not None and plan[0].node_id == "a" and len(plan[0].gpu_indices) == 1
    assert plan[0].gpu_fraction == 1.0


@pytest.mark.parametrize("name", ["best_fit", "gpu_packing", "dot_product", "gpu_clustering"])
def test_shared_gpu_goes_to_tightest_fit(name):
    s = snap(node("a", (1.0, 0.5, 0.7)))
    plan = get_policy(name).place(s, [gpu_req(frac=0.4)])
    assert plan == [BundlePlacement("a", (1,), 0.4)]


@pytest.mark.parametrize("name", ALL)
def test_shared_gpu_never_over_a_full_gpu(name):
    s = snap(node("a", (0.3, 0.2)))
    assert get_policy(name).place(s, [gpu_req(frac=0.4)]) is None
    plan = get_policy(name).place(s, [gpu_req(frac=0.3)])
    assert plan is not None and plan[0].gpu_indices == (0,)


@pytest.mark.parametrize("name", ALL)
def test_multi_gpu_takes_fully_free_gpus(name):
    s = snap(node("a", (1.0, 0.5, 1.0, 1.0)))
    plan = get_policy(name).place(s, [gpu_req(n=2)])
    assert plan is not None and plan[0].gpu_indices == (0, 2)
    assert get_policy(name).place(s, [gpu_req(n=4)]) is None


@pytest.mark.parametrize("name", ALL)
def test_gpu_type_constraint(name):
    s = snap(node("t4", (1.0,), gtype="T4"), node("v100", (1.0,), gtype="V100"))
    plan = get_policy(name).place(s, [gpu_req(types={"V100"})])
    assert plan is not None and plan[0].node_id == "v100"
    assert get_policy(name).place(s, [gpu_req(types={"A100"})]) is None
    # A CPU-only bundle ignores a GPU-type constraint and fits anywhere with CPU.
    cpu_only = BundleRequest(cpu=1, mem=1, gpu_types={"A100"})
    assert get_policy(name).place(s, [cpu_only]) is not None


@pytest.mark.parametrize("name", ALL)
def test_cpu_and_memory_are_checked(name):
    s = snap(node("small", (1.0,), cpu=2, mem=4), node("big", (1.0,), cpu=16, mem=64))
    plan = get_policy(name).place(s, [gpu_req(cpu=8, mem=8)])
    assert plan is not None and plan[0].node_id == "big"
    assert get_policy(name).place(s, [gpu_req(cpu=32)]) is None
    assert get_policy(name).place(s, [gpu_req(cpu=1, mem=100)]) is None


@pytest.mark.parametrize("name", ALL)
def test_cpu_only_bundle_on_gpu_less_node(name):
    s = snap(node("cpu", (), cpu=8, mem=8))
    plan = get_policy(name).place(s, [BundleRequest(cpu=4, mem=4)])
    assert plan == [BundlePlacement("cpu", (), 0.0)]
    assert get_policy(name).place(s, [gpu_req()]) is None


# -- gangs ---------------------------------------------------------------------------------------
TWO_NODES = snap(node("a", (1.0, 1.0)), node("b", (1.0, 1.0)))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_pack_keeps_the_gang_on_one_node(name):
    plan = get_policy(name).place(TWO_NODES, [gpu_req(), gpu_req()], "PACK")
    assert plan is not None and plan[0].node_id == plan[1].node_id
    assert set(plan[0].gpu_indices + plan[1].gpu_indices) == {0, 1}


@pytest.mark.parametrize("name", ALL)
def test_pack_spills_over_when_one_node_is_not_enough(name):
    plan = get_policy(name).place(TWO_NODES, [gpu_req()] * 3, "PACK")
    assert plan is not None and {p.node_id for p in plan} == {"a", "b"}


@pytest.mark.parametrize("name", ALL)
def test_spread_and_strict_spread(name):
    plan = get_policy(name).place(TWO_NODES, [gpu_req(), gpu_req()], "SPREAD")
    assert plan is not None and {p.node_id for p in plan} == {"a", "b"}
    plan = get_policy(name).place(TWO_NODES, [gpu_req()] * 3, "SPREAD")
    assert plan is not None  # SPREAD may reuse a node once every node is used
    assert get_policy(name).place(TWO_NODES, [gpu_req()] * 3, "STRICT_SPREAD") is None
    plan = get_policy(name).place(TWO_NODES, [gpu_req()] * 2, "STRICT_SPREAD")
    assert plan is not None and plan[0].node_id != plan[1].node_id


@pytest.mark.parametrize("name", ALL)
def test_strict_pack(name):
    s = snap(node("a", (1.0, 1.0)), node("b", (1.0, 1.0, 1.0, 1.0)))
    plan = get_policy(name).place(s, [gpu_req(), gpu_req(n=2)], "STRICT_PACK")
    assert plan is not None and {p.node_id for p in plan} == {"b"}
    used = plan[0].gpu_indices + plan[1].gpu_indices
    assert len(set(used)) == 3
    assert get_policy(name).place(TWO_NODES, [gpu_req(), gpu_req(n=2)], "STRICT_PACK") is None


@pytest.mark.parametrize("name", ALL)
def test_gang_is_all_or_nothing_and_snapshot_untouched(name):
    s = snap(node("a", (1.0, 1.0), cpu=4), node("b", (0.5,), cpu=4))
    before = copy.deepcopy(s)
    assert get_policy(name).place(s, [gpu_req(n=2), gpu_req(n=1), gpu_req(frac=0.6)]) is None
    assert s == before
    plan = get_policy(name).place(s, [gpu_req(n=2), gpu_req(frac=0.5)])
    assert plan is not None and s == before
    after = apply(s, plan, [gpu_req(n=2), gpu_req(frac=0.5)])
    assert s == before and after != before


@pytest.mark.parametrize("name", ALL)
def test_gang_with_shared_bundles_never_overfills_a_gpu(name):
    s = snap(node("a", (1.0,)))
    bundles = [gpu_req(frac=0.4)] * 3
    assert get_policy(name).place(s, bundles, "STRICT_PACK") is None
    plan = get_policy(name).place(s, bundles[:2], "STRICT_PACK")
    assert plan is not None
    assert apply(s, plan, bundles[:2]).nodes[0].gpu_free[0] == pytest.approx(0.2)


# -- apply ---------------------------------------------------------------------------------------
def test_apply_updates_only_the_named_node_and_checks_fit():
    s = snap(node("a", (1.0, 0.5), cpu=8, mem=16), node("b"))
    b = gpu_req(frac=0.5, cpu=2, mem=4)
    out = apply(s, [BundlePlacement("a", (1,), 0.5)], [b])
    assert out.node("a").gpu_free == (1.0, 0.0)
    assert out.node("a").cpu_free == 6 and out.node("a").mem_free == 12
    assert out.nodes[1] is s.nodes[1]  # copy-on-write: untouched nodes are shared
    with pytest.raises(ValueError):
        apply(out, [BundlePlacement("a", (1,), 0.5)], [b])  # GPU 1 is full now
    with pytest.raises(ValueError):
        apply(s, [BundlePlacement("zz", (0,), 1.0)], [gpu_req()])
    with pytest.raises(ValueError):
        apply(s, [BundlePlacement("a", (0,), 1.0)], [gpu_req(cpu=64)])
    with pytest.raises(ValueError):
        apply(s, [BundlePlacement("a", (0, 0), 1.0)], [gpu_req(n=2)])


# -- fragmentation measure -----------------------------------------------------------------------
def test_fragmentation_by_hand():
    arr = ClusterArrays(["n"], [8000], [0.0], ["T4"], [[1000, 300, 0]])
    shapes = {(1000, 500, 1, None): 1, (1000, 1000, 2, None): 1, (0, 0, 0, None): 2}
    tp = TypicalPods.from_counts(shapes, coverage=1.0)
    f = frag_amount(tp, tp.typeok(arr), arr.cpu, arr.gpu, arr.gtype)[0]
    # 0.5-GPU pods fit (GPU 0) and strand the 300 on GPU 1; 2-GPU pods do not fit: all 1300
    # stranded; CPU-only pods strand all 1300 GPU milli.
    assert f == pytest.approx(0.25 * 300 + 0.25 * 1300 + 0.5 * 1300)


def test_req_rounding_never_loses_a_gpu_request():
    r = Req.from_bundle(BundleRequest(cpu=0.1, num_gpu=1, gpu_fraction=0.0001))
    assert r.milli == 1 and r.cpu == 100
