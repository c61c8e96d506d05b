"""Circuit breaker, stuck detection, GPU totals and the response cache: pure, clock passed in."""

from orion_ray.policy.resilience import CLOSED, HALF_OPEN, OPEN, Breaker, DeploymentHealth, gpu_totals, stuck
from orion_ray.serving.cache import ResponseCache, request_key


def test_breaker_opens_after_consecutive_failures_and_probes_half_open():
    b = Breaker(threshold=3, cooldown_s=10)
    b = b.record(False, 0).record(False, 1).record(True, 2)  # a success resets the count
    assert b.state == CLOSED and b.failures == 0
    for t in range(3):
        b = b.record(False, t)
    assert b.state == OPEN and not b.allows(5)
    assert b.allows(12)  # cooldown over: one probe
    b = b.admit(12)
    assert b.state == HALF_OPEN and not b.allows(12)  # the probe slot is taken
    assert b.record(False, 13).state == OPEN  # the probe failed
    assert b.record(True, 13).state == CLOSED  # the probe succeeded


def test_stuck_deployments_are_the_unhealthy_past_their_deadline():
    deps = [
        DeploymentHealth("a", False, since=0, deadline_s=30),
        DeploymentHealth("b", True, since=0, deadline_s=30),
        DeploymentHealth("c", False, since=20, deadline_s=30),
    ]
    assert stuck(deps, now=31) == ["a"]
    assert stuck(deps, now=51) == ["a", "c"]


def test_gpu_totals_per_tenant():
    assert gpu_totals(
        {"m--v1": ("acme", 2, 1.0), "m--v2": ("acme", 1, 0.5), "x--v1": ("shared", 3, 0.0)}
    ) == {"acme": 2.5}


def test_cache_only_deterministic_requests():
    base = {"model": "m", "prompt": "hi", "max_tokens": 4}
    assert request_key("m", "v1", {**base, "temperature": 0}) is not None
    assert request_key("m", "v1", base) is None  # default temperature 1
    assert request_key("m", "v1", {**base, "temperature": 0, "stream": True}) is None
    k1 = request_key("m", "v1", {**base, "temperature": 0})
    assert k1 != request_key("m", "v2", {**base, "temperature": 0})  # per version
    assert k1 != request_key("m", "v1", {**base, "temperature": 0, "max_tokens": 5})
    assert k1 == request_key("m", "v1", {"temperature": 0, **base})  # key order is irrelevant


def test_cache_ttl_size_and_lru():
    now = [0.0]
    c = ResponseCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)  # evicts b, the least recently used
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2
    now[0] = 11
    assert c.get("a") is None and len(c) == 1  # expired and dropped
    assert (c.hits, c.misses) == (3, 2)
    off = ResponseCache(max_entries=0)
    off.put("a", 1)
    assert off.get("a") is None
