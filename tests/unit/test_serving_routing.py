"""Load balancing per deployment: the pure replica choices, the spec block and Serve's options."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from orion_ray.policy import balancing as b
from orion_ray.serving.deployer import serve_options
from orion_ray.serving.router_config import ROUTER_CLASSES, balancing_config
from orion_ray.serving_options import LoadBalancing
from orion_ray.serving_specs import DeploymentSpec


def test_round_robin_visits_every_replica_in_a_fixed_order():
    ids = ["c", "a", "b"]
    firsts = [b.round_robin(ids, t)[0][0] for t in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert b.round_robin(ids, 1) == [["b"], ["c", "a"]]  # a full "b" passes its turn to "c"
    assert b.round_robin(["only"], 7) == [["only"]]
    assert b.round_robin([], 0) == []


def test_least_connections_ranks_by_queue_length_unknown_first_ties_rotated():
    q = {"a": 3, "b": 1, "c": None, "d": 1}
    assert b.least_connections(q, 0) == [["c"], ["b", "d"], ["a"]]
    assert b.least_connections({"a": 0, "b": 0}, 1) == [["b", "a"]]  # ties share the load
    assert b.least_connections({}, 0) == []


def test_weighted_draws_in_proportion_to_rank_weights():
    ranks = {"r0": 0, "r1": 1, "r2": 2}
    weights = [3.0, 1.0]  # rank 2 is beyond the list: weight 1
    picks = Counter(b.weighted(ranks, weights, i / 1000)[0][0] for i in range(1000))
    assert picks == {"r0": 600, "r1": 200, "r2": 200}
    assert b.weighted(ranks, weights, 0.0) == [["r0"], ["r1", "r2"]]
    # a zero weight is never drawn; all zero falls back to an even spread
    assert {b.weighted(ranks, [0, 0, 1], i / 10)[0][0] for i in range(10)} == {"r2"}
    assert {b.weighted({"x": 0, "y": 1}, [0, 0], i / 10)[0][0] for i in range(10)} == {"x", "y"}


def test_prompt_text_of_completion_and_chat_calls():
    assert b.prompt_text(("completion", {"prompt": "hello"}), {}) == "hello"
    assert b.prompt_text(("completion", {"prompt": ["first", "second"]}), {}) == "first"
    chat = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}
    assert b.prompt_text(("chat", chat), {}) == "system:S\nuser:U"
    assert b.prompt_text((), {"body": {"prompt": "kw"}}) == "kw"
    assert b.prompt_text(("<starlette request>",), {}) is None


def test_prefix_owner_is_stable_and_moves_only_a_lost_replicas_prefixes():
    ids = ["r1", "r2", "r3"]
    owners = {f"p{i}": b.prefix_owner(f"p{i}", ids) for i in range(200)}
    assert set(owners.values()) == set(ids)
    after = {p: b.prefix_owner(p, ["r1", "r2"]) for p in owners}
    assert all(after[p] == o for p, o in owners.items() if o != "r3")


def test_prefix_affinity_prefers_the_owner_unless_it_is_far_busier():
    q = {"r1": 0, "r2": 0}
    text = "You are a helpful assistant. " * 20
    owner = b.prefix_owner(text[:64], list(q))
    other = "r2" if owner == "r1" else "r1"
    ranks = b.prefix_affinity(text, q, prefix_chars=64, imbalance_threshold=4)
    assert ranks[0] == [owner] and ranks[1] == [other]
    # the same prefix with a different tail goes to the same replica
    assert b.prefix_affinity(text[:64] + "tail", q, prefix_chars=64, imbalance_threshold=4)[0] == [owner]
    busy = {owner: 9, other: 1}
    assert b.prefix_affinity(text, busy, prefix_chars=64, imbalance_threshold=4)[0] == [other]
    within = {owner: 5, other: 1}
    assert b.prefix_affinity(text, within, prefix_chars=64, imbalance_threshold=4)[0] == [owner]
    assert b.prefix_affinity(None, {"a": 2, "b": 0}, prefix_chars=64, imbalance_threshold=4)[0] == ["b"]


@pytest.mark.parametrize(
    "block, problem",
    [
        ({"strategy": "fastest"}, "strategy"),
        ({"strategy": "custom"}, "router_class"),
        ({"strategy": "custom", "router_class": "not a path"}, "router_class"),
        ({"strategy": "round_robin", "router_class": "a.b:C"}, "custom"),
        ({"strategy": "weighted"}, "weights"),
        ({"strategy": "weighted", "weights": [0, 0]}, "positive"),
        ({"strategy": "weighted", "weights": [-1]}, "weights"),
        ({"strategy": "least_connections", "weights": [1]}, "weighted"),
        ({"strategy": "prefix_affinity", "prefix_chars": 0}, "prefix_chars"),
        ({"strategy": "round_robin", "colour": "red"}, "colour"),
    ],
)
def test_bad_load_balancing_blocks_are_refused_with_the_reason(block, problem):
    with pytest.raises(ValidationError) as err:
        DeploymentSpec.model_validate({"model_id": "m", "load_balancing": block})
    assert problem in str(err.value)


def test_serve_options_carry_the_router_of_the_strategy():
    def opts(block):
        return serve_options(DeploymentSpec.model_validate({"model_id": "m", "load_balancing": block}))

    assert "request_router_config" not in serve_options(DeploymentSpec(model_id="m"))
    assert "request_router_config" not in opts({"strategy": "power_of_two"})  # Serve's default
    for strategy, cls in ROUTER_CLASSES.items():
        extra = {"weights": [1, 2]} if strategy == "weighted" else {}
        rc = opts({"strategy": strategy, **extra})["request_router_config"]
        assert rc["request_router_class"] == f"orion_ray.serving.routers:{cls}"
    assert opts({"strategy": "weighted", "weights": [1, 2]})["request_router_config"][
        "request_router_kwargs"
    ] == {"weights": [1.0, 2.0]}
    custom = opts({"strategy": "custom", "router_class": "my.mod:Router", "router_kwargs": {"k": 1}})
    assert custom["request_router_config"] == {
        "request_router_class": "my.mod:Router",
        "request_router_kwargs": {"k": 1},
    }
    lb = LoadBalancing(strategy="prefix_affinity", prefix_chars=32, imbalance_threshold=2)
    assert balancing_config(lb)["request_router_kwargs"] == {"prefix_chars": 32, "imbalance_threshold": 2}


def test_every_router_class_exists_and_is_a_serve_request_router():
    from ray.serve.request_router import RequestRouter

    from orion_ray.serving import routers

    for name in ROUTER_CLASSES.values():
        assert issubclass(getattr(routers, name), RequestRouter)


def test_a_custom_router_is_checked_at_the_door():
    from orion_ray.errors import ValidationError as OrionValidation
    from orion_ray.serving.routers import check_router_class

    check_router_class("orion_ray.serving.routers:RoundRobinRouter")
    for path, problem in [
        ("no_such_module_xyz:Router", "ModuleNotFoundError"),
        ("orion_ray.serving.routers:Nope", "AttributeError"),
        ("orion_ray.serving.routers:check_router_class", "subclass"),
    ]:
        with pytest.raises(OrionValidation) as err:
            check_router_class(path)
        assert err.value.details[0]["field"] == "load_balancing.router_class"
        assert problem in err.value.details[0]["problem"]


def test_the_choices_the_options_and_the_caches_import_no_heavy_dependency():
    import subprocess
    import sys

    code = (
        "import sys, orion_ray.policy.balancing, orion_ray.serving_options, "
        "orion_ray.serving.router_config, orion_ray.serving.caching\n"
        "bad = [m for m in ('ray', 'fastapi', 'starlette') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


class _Replica:
    def __init__(self, rid: str, rank=None):
        from types import SimpleNamespace

        self.replica_id = SimpleNamespace(unique_id=rid)
        self.replica_metadata = {} if rank is None else {"rank": rank}


def _router(cls, **state):
    """A router without Serve's plumbing: only what ``choose_replicas`` reads."""
    from types import SimpleNamespace

    r = object.__new__(cls)
    r._replica_queue_len_cache = SimpleNamespace(get=lambda rid: state.get("queues", {}).get(rid.unique_id))
    for k, v in state.items():
        if k != "queues":
            setattr(r, k, v)
    return r


def test_the_serve_routers_rank_real_replica_objects_and_back_off_when_all_are_full():
    import asyncio
    from types import SimpleNamespace

    from orion_ray.serving import routers

    reps = [_Replica("b", rank=1), _Replica("a", rank=0), _Replica("c", rank=2)]
    pending = SimpleNamespace(
        args=("completion", {"prompt": "hello"}),
        kwargs={},
        routing_context=SimpleNamespace(should_backoff=False),
    )

    def ids(ranks):
        return [[r.replica_id.unique_id for r in rank] for rank in ranks]

    rr = _router(routers.RoundRobinRouter)
    firsts = [ids(asyncio.run(rr.choose_replicas(reps, pending)))[0][0] for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"] and pending.routing_context.should_backoff

    lc = _router(routers.LeastConnectionsRouter, queues={"a": 4, "b": 0, "c": 2})
    assert ids(asyncio.run(lc.choose_replicas(reps, pending))) == [["b"], ["c"], ["a"]]

    w = _router(routers.WeightedRouter)
    w.initialize_state(weights=[0, 0, 5])
    assert ids(asyncio.run(w.choose_replicas(reps, pending)))[0] == ["c"]  # rank 2 has all the weight

    pa = _router(routers.PrefixAffinityRouter)
    pa.initialize_state(prefix_chars=3, imbalance_threshold=1)
    first = ids(asyncio.run(pa.choose_replicas(reps, pending)))[0]
    other = SimpleNamespace(
        args=("completion", {"prompt": "help me"}), kwargs={}, routing_context=pending.routing_context
    )
    assert ids(asyncio.run(pa.choose_replicas(reps, other)))[0] == first  # same 3-character prefix
