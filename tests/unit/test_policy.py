"""Pure scheduling policy: purity, gang fit, backoff (the queue order is in test_policy_admission)."""

import copy
import subprocess
import sys

import pytest

from orion_ray.policy import NodeView, fit_gang, retry_delay
from orion_ray.policy.fit import ACCELERATOR_LABEL, could_ever_fit


# -- purity --------------------------------------------------------------------------------------
def test_policy_imports_no_heavy_dependency():
    # every module of the package, not only what its __init__ pulls in
    code = (
        "import importlib, pkgutil, sys, orion_ray.policy as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'orion_ray.policy.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('ray', 'fastapi', 'boto3', 'kubernetes', 'starlette') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- gang fit ------------------------------------------------------------------------------------
def node(nid, cpu=4, gpu=0, labels=None, schedulable=True):
    free = {"CPU": float(cpu), "GPU": float(gpu)}
    return NodeView(nid, dict(free), dict(free), labels or {}, schedulable)


def test_pack_keeps_the_gang_together_when_it_can():
    nodes = [node("a", cpu=4), node("b", cpu=4)]
    assert fit_gang([{"CPU": 1}] * 3, "PACK", nodes) == ["a", "a", "a"]


def test_pack_overflows_to_another_node():
    nodes = [node("a", cpu=2), node("b", cpu=4)]
    assert fit_gang([{"CPU": 1}] * 3, "PACK", nodes) == ["a", "a", "b"]


def test_spread_prefers_unused_nodes_but_may_reuse():
    nodes = [node("a"), node("b")]
    assert fit_gang([{"CPU": 1}] * 2, "SPREAD", nodes) == ["a", "b"]
    assert sorted(fit_gang([{"CPU": 1}] * 3, "SPREAD", nodes)) == ["a", "a", "b"]


def test_strict_spread_needs_distinct_nodes():
    nodes = [node("a"), node("b")]
    assert fit_gang([{"CPU": 1}] * 2, "STRICT_SPREAD", nodes) == ["a", "b"]
    assert fit_gang([{"CPU": 1}] * 3, "STRICT_SPREAD", nodes) is None


def test_strict_pack_needs_one_node_for_the_whole_gang():
    nodes = [node("a", cpu=2), node("b", cpu=3)]
    assert fit_gang([{"CPU": 1}] * 3, "STRICT_PACK", nodes) == ["b", "b", "b"]
    assert fit_gang([{"CPU": 2}] * 2, "STRICT_PACK", nodes) is None
    assert fit_gang([{"CPU": 2}] * 2, "PACK", nodes) == ["a", "b"]


def test_all_or_nothing():
    nodes = [node("a", gpu=4), node("b", gpu=2)]
    assert fit_gang([{"GPU": 4}, {"GPU": 4}], "PACK", nodes) is None
    assert fit_gang([{"GPU": 4}, {"GPU": 2}], "PACK", nodes) == ["a", "b"]


def test_missing_resource_on_node_means_no_fit():
    assert fit_gang([{"accel": 1}], "PACK", [node("a")]) is None
    n = node("a")
    n.free["accel"] = 1.0
    assert fit_gang([{"accel": 1}], "PACK", [n]) == ["a"]


def test_fractional_gpus_share_a_device():
    nodes = [node("a", gpu=1)]
    assert fit_gang([{"GPU": 0.5}] * 2, "STRICT_PACK", nodes) == ["a", "a"]
    assert fit_gang([{"GPU": 0.5}] * 3, "PACK", nodes) is None
    # float sums such as 0.1 + 0.2 must not lose a fit to rounding
    assert fit_gang([{"GPU": 0.1}, {"GPU": 0.2}, {"GPU": 0.7}], "PACK", nodes) == ["a"] * 3


def test_gpu_type_follows_the_accelerator_label():
    nodes = [
        node("t4", gpu=8, labels={ACCELERATOR_LABEL: "T4"}),
        node("a100", gpu=8, labels={ACCELERATOR_LABEL: "A100"}),
        node("plain", gpu=8),
    ]
    assert ACCELERATOR_LABEL == "ray.io/accelerator-type"
    assert fit_gang([{"GPU": 1}], "PACK", nodes, ["A100"]) == ["a100"]
    assert fit_gang([{"GPU": 1}, {"GPU": 1}], "SPREAD", nodes, ["A100", "T4"]) == ["a100", "t4"]
    assert fit_gang([{"GPU": 1}], "PACK", nodes, ["H100"]) is None
    assert fit_gang([{"GPU": 1}] * 2, "STRICT_PACK", nodes, ["A100", "T4"]) is None
    assert fit_gang([{"GPU": 1}] * 2, "STRICT_PACK", nodes, ["A100", "A100"]) == ["a100"] * 2


def test_unschedulable_nodes_are_skipped():
    nodes = [node("cordoned", schedulable=False), node("ok")]
    assert fit_gang([{"CPU": 1}], "PACK", nodes) == ["ok"]


def test_fit_does_not_mutate_nodes():
    nodes = [node("a", cpu=2, gpu=1), node("b", cpu=2, gpu=1)]
    before = copy.deepcopy(nodes)
    for strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        fit_gang([{"CPU": 1, "GPU": 0.5}] * 2, strategy, nodes)
    assert nodes == before


def test_no_nodes_no_fit():
    assert fit_gang([{"CPU": 1}], "PACK", []) is None


def test_could_ever_fit_uses_total_capacity():
    busy = NodeView("a", free={"CPU": 0.0, "GPU": 0.0}, total={"CPU": 8.0, "GPU": 2.0})
    assert fit_gang([{"GPU": 2}], "PACK", [busy]) is None
    assert could_ever_fit([{"GPU": 2}], "PACK", [busy])
    assert not could_ever_fit([{"GPU": 4}], "PACK", [busy])
    assert not could_ever_fit([{"CPU": 1}] * 2, "STRICT_SPREAD", [busy])
    assert busy.free == {"CPU": 0.0, "GPU": 0.0}


# -- backoff -------------------------------------------------------------------------------------
def test_retry_delay_doubles_from_base():
    assert [retry_delay(a, base_s=1.0, max_s=1000) for a in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(3, base_s=0.5, max_s=1000) == 2.0


def test_retry_delay_is_capped():
    assert retry_delay(10, base_s=1.0, max_s=60.0) == 60.0
    assert retry_delay(10_000, base_s=1.0, max_s=300.0) == 300.0  # no overflow


@pytest.mark.parametrize("attempt", [0, -3])
def test_retry_delay_below_one_is_the_base(attempt):
    assert retry_delay(attempt, base_s=2.0, max_s=100) == 2.0
