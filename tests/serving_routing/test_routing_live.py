"""Orion's request routers on a real Serve: replicas answer with their replica id, and the
deployment options are the ones Orion's deployer gives Serve (``serve_options``)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from orion_ray.serving.deployer import serve_options
from orion_ray.serving_specs import DeploymentSpec

pytestmark = pytest.mark.timeout(240)
STRATEGIES = {"round_robin": 2, "least_connections": 3, "prefix_affinity": 2}
EXTRA = {"prefix_affinity": {"prefix_chars": 64}}  # the prompts below share 84-character prefixes


def _app(strategy: str) -> str:
    return f"route-{strategy.replace('_', '-')}"


@pytest.fixture(scope="module")
def handles(serve_cluster):
    """One application per strategy, all deployed at once (Serve starts their replicas together)."""
    from ray import serve

    from tests.serving_routing.replicas import WhoAmI

    for strategy, replicas in STRATEGIES.items():
        spec = DeploymentSpec.model_validate(
            {
                "model_id": "who",
                "replicas": replicas,
                "load_balancing": {"strategy": strategy, **EXTRA.get(strategy, {})},
            }
        )
        opts = serve_options(spec)
        assert opts["request_router_config"]["request_router_class"].startswith("orion_ray.serving.routers:")
        app = serve.deployment(WhoAmI, name="WhoAmI").options(**opts).bind()
        serve._run(app, name=_app(strategy), route_prefix=None, _blocking=False)
    deadline = time.time() + 180
    while time.time() < deadline:
        apps = serve.status().applications
        if all(
            apps.get(_app(s)) is not None and str(getattr(apps[_app(s)].status, "value", "")) == "RUNNING"
            for s in STRATEGIES
        ):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"applications not running: {serve.status().applications}")
    return {s: serve.get_deployment_handle("WhoAmI", _app(s)) for s in STRATEGIES}


def test_round_robin_and_least_connections_observed_over_replicas(handles):
    # round robin: one request at a time, each replica in turn, in a fixed order
    rr = [handles["round_robin"].complete.remote("completion", {"prompt": "x"}).result() for _ in range(6)]
    assert len(set(rr)) == 2
    assert rr[:2] == rr[2:4] == rr[4:6], rr

    # least connections: six requests held in flight, each sent once the previous one is placed,
    # land two per replica (power of two choices would pile up with probability 1/3 per step)
    lc = handles["least_connections"]
    held = []
    for i in range(6):
        resp = lc.complete.remote("completion", {"prompt": f"q{i}", "hold": 1.5})
        resp._to_object_ref_sync()  # routed to a replica
        held.append(resp)
    counts = Counter(r.result() for r in held)
    assert sorted(counts.values()) == [2, 2, 2], counts


def test_prefix_affinity_sends_the_same_prefix_to_the_same_replica(handles):
    h = handles["prefix_affinity"]
    prefixes = [f"You are assistant number {n}. " * 3 for n in range(8)]
    owner = {}
    for round_ in range(3):
        for p in prefixes:
            body = {"prompt": p + f"question {round_}", "temperature": 0}
            rid = h.complete.remote("completion", body).result()
            assert owner.setdefault(p, rid) == rid, f"prefix {p[:30]!r} moved"
    chat = {"messages": [{"role": "system", "content": prefixes[0]}, {"role": "user", "content": "hi"}]}
    first = h.complete.remote("chat", chat).result()
    assert all(h.complete.remote("chat", chat).result() == first for _ in range(3))
    assert len(set(owner.values())) == 2  # eight prefixes spread over both replicas
