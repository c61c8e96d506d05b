"""The placement engine over a live cluster view: held bundles, Ray's GPU rule, custom resources."""

from orion_ray.policy import NodeView
from orion_ray.policy.live_placement import (
    Held,
    LivePlacer,
    bundle_request,
    fragmentation_summary,
    gpu_state,
    held_from_record,
    placement_record,
    stranded_gpus,
)
from orion_ray.policy.placement import get_policy

LABEL = "ray.io/accelerator-type"


def node(nid, gpus=4, cpu=8, gpu_type="H100", custom=None, schedulable=True):
    total = {"CPU": float(cpu), "memory": 64e9}
    if gpus:
        total["GPU"] = float(gpus)
    total.update(custom or {})
    return NodeView(nid, dict(total), total, {LABEL: gpu_type} if gpu_type else {}, schedulable)


def placer(nodes, held=(), policy="orion"):
    held = list(held)
    by = {n.node_id: n for n in nodes}
    for h in held:  # the scheduler subtracts held bundles from the node view; do the same
        for k, v in h.bundle.items():
            by[h.node_id].free[k] -= v
    return LivePlacer(get_policy(policy), nodes, held)


def test_bundle_request_maps_ray_bundles():
    r = bundle_request({"CPU": 2, "GPU": 0.5, "memory": 1e9}, "H100")
    assert (r.cpu, r.mem, r.num_gpu, r.gpu_fraction, r.gpu_types) == (2, 1e9, 1, 0.5, {"H100"})
    r = bundle_request({"CPU": 1, "GPU": 2}, None)
    assert (r.num_gpu, r.gpu_fraction, r.gpu_types) == (2, 1.0, None)
    assert bundle_request({"CPU": 1}, "H100").gpu_types is None  # a CPU bundle has no GPU type


def test_gpu_state_counts_shared_at_index_and_whole_on_free_gpus():
    held = [Held("n", {"GPU": 0.5}, (2,)), Held("n", {"GPU": 2.0}, (0, 1)), Held("n", {"GPU": 0.3}, (2,))]
    assert gpu_state(4, held) == [0, 0, 200, 1000]
    # an index not known yet: the tightest GPU that fits, as Ray picks it
    assert gpu_state(2, [Held("n", {"GPU": 0.6}, (0,)), Held("n", {"GPU": 0.3})]) == [100, 1000]


def test_shared_gpu_goes_where_ray_would_put_it():
    # GPU 1 is half used: Ray gives a 0.3 bundle the tightest GPU that fits (1), so must Orion
    p = placer([node("a")], [Held("a", {"CPU": 1, "GPU": 0.5}, (1,))])
    got = p.place([{"CPU": 1, "GPU": 0.3}], [None], "PACK")
    assert got == [Held("a", {"CPU": 1, "GPU": 0.3}, (1,))]


def test_commit_takes_capacity_for_the_rest_of_the_cycle():
    p = placer([node("a", gpus=2)])
    first = p.place([{"CPU": 1, "GPU": 2}], [None], "PACK")
    assert first is not None
    p.commit(first)
    assert p.place([{"CPU": 1, "GPU": 1}], [None], "PACK") is None
    assert p.place([{"CPU": 1}], [None], "PACK") is not None


def test_gpu_type_constraint_and_strict_spread_gang():
    p = placer([node("h1"), node("h2"), node("a1", gpu_type="A100")])
    got = p.place([{"CPU": 1, "GPU": 1}] * 2, ["H100", "H100"], "STRICT_SPREAD")
    assert sorted(h.node_id for h in got) == ["h1", "h2"]
    assert p.place([{"CPU": 1, "GPU": 1}] * 3, ["H100"] * 3, "STRICT_SPREAD") is None
    assert p.could_ever_fit([{"CPU": 1, "GPU": 1}] * 2, ["A100"] * 2, "STRICT_PACK")
    assert not p.could_ever_fit([{"CPU": 1, "GPU": 1}] * 2, ["A100"] * 2, "STRICT_SPREAD")


def test_cordoned_nodes_get_nothing():
    p = placer([node("a", schedulable=False), node("b")])
    assert [h.node_id for h in p.place([{"CPU": 1, "GPU": 1}], [None], "PACK")] == ["b"]


def test_custom_resources_use_the_simple_fit_on_nodes_that_have_them():
    p = placer([node("a"), node("b", custom={"nvme": 2.0})])
    got = p.place([{"CPU": 1, "GPU": 1, "nvme": 1.0}], [None], "PACK")
    assert got[0].node_id == "b" and len(got[0].gpu_indices) == 1
    p.commit(got)
    p.commit(p.place([{"CPU": 1, "nvme": 1.0}], [None], "PACK"))
    assert p.place([{"CPU": 1, "nvme": 1.0}], [None], "PACK") is None


def test_fragmentation_reports_stranded_capacity_by_node_and_type():
    held = [Held("a", {"CPU": 1, "GPU": 0.7}, (0,)), Held("a", {"CPU": 1, "GPU": 3.0}, (1, 2, 3))]
    p = placer([node("a"), node("b", gpu_type="A100"), node("c", gpus=0, gpu_type=None)], held)
    policy = get_policy("orion")
    for _ in range(20):  # the expected mix: whole single GPUs
        policy.observe(bundle_request({"CPU": 1, "GPU": 1}))
    rows = stranded_gpus(p.snapshot(), policy)
    by = {r["node_id"]: r for r in rows}
    assert set(by) == {"a", "b"}  # a node without GPUs has none to strand
    assert by["a"]["gpu_free"] == [0.3, 0.0, 0.0, 0.0]
    assert by["a"]["stranded_gpus"] > 0.29  # 0.3 of a GPU no whole-GPU request can use
    assert by["b"]["stranded_gpus"] < 0.01
    s = fragmentation_summary(rows)
    assert s["by_gpu_type"]["H100"]["free_gpus"] == 0.3
    assert s["free_gpus"] == 4.3


def test_placement_record_round_trip():
    held = [Held("a", {"GPU": 0.5}, (3,), observed=True), Held("b", {"CPU": 1.0})]
    rec = placement_record(held)
    assert rec[0] == {"bundle": 0, "node_id": "a", "gpu_indices": [3], "gpu_indices_observed": True}
    assert held_from_record(rec, [h.bundle for h in held]) == held
