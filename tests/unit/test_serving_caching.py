"""Caching as configured: the bytes-bounded LRU with TTL, the ``caching`` block (per model and
``orion.serving.caching``), key patterns, metrics and warm standby."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orion_ray.config import OrionConfig
from orion_ray.metrics import OrionMetrics
from orion_ray.serving.cache import ResponseCache, size_of
from orion_ray.serving.caching import ModelCaches
from orion_ray.serving.deployer import serve_options
from orion_ray.serving.manager import DeploymentManager, MemoryDeployer, MemoryKv
from orion_ray.serving_options import Caching, parse_size
from orion_ray.serving_specs import DeploymentSpec

from .test_api import assert_error
from .test_serving_api import ACME, ADMIN, complete, deploy, env  # noqa: F401 (the fixture)


def test_sizes_read_as_users_write_them():
    assert parse_size("10GB") == 10 * 10**9
    assert parse_size("512MB") == 512 * 10**6
    assert parse_size("1GiB") == 2**30 and parse_size("1.5kb") == 1500 and parse_size(" 7 B ") == 7
    assert parse_size(4096) == 4096
    for bad in ("ten GB", "5XB", "-1MB", True, "2TiB"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_cache_is_bounded_in_bytes_and_evicts_least_recently_used():
    events = []
    c = ResponseCache(max_bytes=30, ttl_s=100, on_event=lambda k, n: events.append((k, n)))
    c.put("a", "x" * 8)  # JSON "xxxxxxxx": 10 bytes
    c.put("b", "y" * 8)
    assert c.bytes == 20 == size_of("x" * 8) * 2
    assert c.get("a") == "x" * 8  # a is now the most recent
    c.put("c", "z" * 8)
    c.put("d", "w" * 8)  # 40 > 30: b, the least recently used, goes
    assert c.get("b") is None and c.get("a") and c.get("c") and c.get("d") and c.bytes == 30
    assert (c.hits, c.misses, c.evictions) == (4, 1, 1)
    c.put("huge", "h" * 100)  # larger than the whole cache: not kept, nothing evicted for it
    assert c.get("huge") is None and len(c) == 3 and c.evictions == 1
    c.put("a", "x" * 18)  # replacing an entry counts its new size
    assert c.bytes == 40 - 10 or c.bytes <= 30
    assert ("hit", 1) in events and ("miss", 1) in events and ("eviction", 1) in events
    assert events[-1][0] == "bytes" and events[-1][1] == c.bytes


def test_entries_expire_after_the_ttl():
    now = [0.0]
    c = ResponseCache(max_bytes=1000, ttl_s=10, clock=lambda: now[0])
    c.put("a", 1)
    now[0] = 10
    assert c.get("a") == 1
    now[0] = 10.5
    assert c.get("a") is None and c.bytes == 0 and c.evictions == 1
    off = ResponseCache(max_bytes=0)
    off.put("a", 1)
    assert off.get("a") is None and off.misses == 0


@pytest.mark.parametrize(
    "block, problem",
    [
        ({"eviction_policy": "lfu"}, "not supported"),
        ({"eviction_policy": "smart"}, "only lru"),
        ({"max_size": "lots"}, "max_size"),
        ({"ttl": "forever"}, "ttl"),
        ({"cache_key_patterns": ["inference:{{model}}:{{input_hash}}"]}, "unknown placeholder {{model}}"),
        ({"cache_key_patterns": ["inference:{{model_id}}"]}, "input_hash"),
        ({"cache_key_patterns": ["x:{model_id}:{{input_hash}}"]}, "placeholder is written"),
        ({"cache_key_patterns": []}, "cache_key_patterns"),
        ({"warm_standby": {"min_replicas": 1, "idle_unload_after": "soon"}}, "idle_unload_after"),
        ({"size": "1GB"}, "size"),
    ],
)
def test_bad_caching_blocks_are_refused_with_the_reason(block, problem):
    with pytest.raises(ValidationError) as err:
        DeploymentSpec.model_validate({"model_id": "m", "caching": block})
    assert problem in str(err.value)


def test_the_original_caching_block_is_accepted_as_written():
    c = Caching.model_validate(
        {
            "enabled": True,
            "ttl": "5m",
            "max_size": "10GB",
            "eviction_policy": "LRU",
            "cache_key_patterns": ["inference:{{model_id}}:{{input_hash}}"],
        }
    )
    assert (c.ttl, c.max_size, c.eviction_policy) == (300.0, 10 * 10**9, "lru")


def test_key_patterns_shape_the_keys():
    body = {"model": "m", "prompt": "p", "temperature": 0}
    cfg = Caching(cache_key_patterns=["inference:{{model_id}}:{{tenant_id}}:{{endpoint}}:{{input_hash}}"])
    key = ModelCaches.key(cfg, kind="chat", body=body, model_id="m", version="v1", tenant="acme")
    assert key is not None and key.startswith("inference:m:acme:chat:") and len(key.split(":")[-1]) == 64
    assert (
        ModelCaches.key(
            cfg, kind="chat", body={**body, "temperature": 1}, model_id="m", version="v1", tenant=None
        )
        is None
    )
    off = Caching(enabled=False)
    assert ModelCaches.key(off, kind="chat", body=body, model_id="m", version="v1", tenant=None) is None


def test_each_version_has_its_own_cache_made_anew_when_its_block_changes():
    m = OrionMetrics(ray_mirror=False)
    caches = ModelCaches(metrics=m)
    body = {"model": "m", "prompt": "p", "temperature": 0}
    entry = {"caching": {"v1": {"max_size": "1MB"}, "v2": None}}
    cache, key, hit = caches.lookup(
        entry, kind="completion", body=body, model_id="m", version="v1", tenant=None
    )
    assert hit is None and cache.max_bytes == 10**6
    cache.put(key, {"answer": 1})
    assert caches.lookup(entry, kind="completion", body=body, model_id="m", version="v1", tenant=None)[2]
    other = caches.lookup(entry, kind="completion", body=body, model_id="m", version="v2", tenant=None)
    assert other[2] is None and other[0].max_bytes == Caching().max_size  # the default block
    changed = {"caching": {"v1": {"max_size": "2MB"}}}
    assert (
        caches.lookup(changed, kind="completion", body=body, model_id="m", version="v1", tenant=None)[2]
        is None
    )
    text = m.render()
    assert 'orion_serving_cache_hits_total{model="m",version="v1"} 1.0' in text
    assert 'orion_serving_cache_misses_total{model="m",version="v1"} 2.0' in text
    assert 'orion_serving_cache_bytes{model="m",version="v1"} 0.0' in text  # the old cache went


def test_the_routing_table_carries_each_versions_block_or_the_cluster_default():
    mgr = DeploymentManager(MemoryDeployer())
    mgr.default_caching = Caching(ttl="1m").model_dump(mode="json")
    mgr.create(DeploymentSpec(model_id="m", version="v1"))
    mgr.create(
        DeploymentSpec.model_validate({"model_id": "m", "version": "v2", "caching": {"enabled": False}})
    )
    table = mgr.routing_table()["m"]["caching"]
    assert table["v1"]["ttl"] == 60.0 and table["v2"]["enabled"] is False


def test_the_cluster_default_survives_a_restart_of_the_manager():
    """A restarted actor builds its manager with the caching it was created with; the latest
    ``orion up``'s, saved with the desired state, wins over it."""
    kv, deployer = MemoryKv(), MemoryDeployer()
    created_with = Caching(ttl="1m").model_dump(mode="json")
    mgr = DeploymentManager(deployer, kv=kv, default_caching=created_with)
    mgr.create(DeploymentSpec(model_id="m", version="v1"))
    mgr.set_default_caching(Caching(ttl="10m").model_dump(mode="json"))  # a later orion up
    restarted = DeploymentManager(deployer, kv=kv, default_caching=created_with)
    assert restarted.routing_table()["m"]["caching"]["v1"]["ttl"] == 600.0
    restarted.set_default_caching(None)  # cleared is kept cleared too
    assert DeploymentManager(deployer, kv=kv, default_caching=created_with).default_caching is None
    fresh = DeploymentManager(MemoryDeployer(), kv=MemoryKv(), default_caching=created_with)
    assert fresh.default_caching == created_with  # nothing saved yet: the creating orion up's


def test_the_cluster_default_lives_in_orion_config():
    cfg = OrionConfig.model_validate({"orion": {"serving": {"caching": {"ttl": "10m", "max_size": "1GB"}}}})
    assert cfg.orion.serving.caching.ttl == 600 and cfg.orion.serving.caching.max_size == 10**9
    with pytest.raises(ValidationError) as err:
        OrionConfig.model_validate({"orion": {"serving": {"caching": {"eviction_policy": "fifo"}}}})
    assert "orion.serving.caching.eviction_policy" in ".".join(
        map(str, err.value.errors()[0]["loc"])
    ) or "fifo" in str(err.value)


def test_warm_standby_becomes_serves_autoscaling_bounds():
    spec = DeploymentSpec.model_validate(
        {
            "model_id": "m",
            "autoscaling": {"min_replicas": 2, "max_replicas": 4},
            "caching": {"warm_standby": {"min_replicas": 1, "idle_unload_after": "15m"}},
        }
    )
    a = serve_options(spec)["autoscaling_config"]
    assert (a["min_replicas"], a["downscale_delay_s"], a["initial_replicas"]) == (1, 900.0, 1)
    assert "downscale_to_zero_delay_s" not in a
    zero = DeploymentSpec.model_validate(
        {
            "model_id": "m",
            "autoscaling": {"max_replicas": 2},
            "caching": {"warm_standby": {"min_replicas": 0, "idle_unload_after": 120}},
        }
    )
    a = serve_options(zero)["autoscaling_config"]
    assert (a["min_replicas"], a["downscale_to_zero_delay_s"], a["initial_replicas"]) == (0, 120.0, 1)
    again = DeploymentSpec.model_validate(spec.model_dump(mode="json"))  # stored and read back
    assert again.autoscaling == spec.autoscaling
    for bad, problem in [
        ({"replicas": 2}, "needs autoscaling"),
        ({"autoscaling": {"max_replicas": 1}, "ws": 3}, "must not exceed"),
    ]:
        ws = {"min_replicas": bad.pop("ws", 1)}
        with pytest.raises(ValidationError) as err:
            DeploymentSpec.model_validate({"model_id": "m", **bad, "caching": {"warm_standby": ws}})
        assert problem in str(err.value)


# -- through the API ----------------------------------------------------------------------------
def test_a_models_caching_block_is_honoured_and_bad_ones_are_422(env):  # noqa: F811
    client, serving, router, _ = env
    deploy(client, caching={"enabled": False})
    first = complete(client, temperature=0).json()
    handle = serving.handles["orion-llm-chat--v1"]
    calls = handle.calls
    second = complete(client, temperature=0).json()
    assert second["id"] != first["id"] and handle.calls == calls + 1  # asked again: not cached
    err = assert_error(
        client.post(
            "/internal/deployments/create",
            json={"model_id": "m", "caching": {"cache_key_patterns": ["{{prompt}}:{{input_hash}}"]}},
            headers=ADMIN,
        ),
        422,
        "validation_error",
    )
    assert any(d["field"].startswith("caching.cache_key_patterns") for d in err["details"]), err


def test_load_balancing_at_the_door(env):  # noqa: F811
    client = env[0]
    bad = {"model_id": "m", "load_balancing": {"strategy": "custom", "router_class": "nope_xyz.mod:R"}}
    err = assert_error(
        client.post("/internal/deployments/create", json=bad, headers=ADMIN), 422, "validation_error"
    )
    assert err["details"][0]["field"] == "load_balancing.router_class"
    # only admins deploy, so only admins name a router class (it runs in Serve's processes)
    assert client.post("/internal/deployments/create", json=bad, headers=ACME).status_code == 403
    err = assert_error(
        client.post(
            "/internal/deployments/create",
            json={"model_id": "m", "load_balancing": {"strategy": "least_busy"}},
            headers=ADMIN,
        ),
        422,
        "validation_error",
    )
    assert any(d["field"].startswith("load_balancing.strategy") for d in err["details"]), err
    ok = {
        "model_id": "m",
        "load_balancing": {
            "strategy": "custom",
            "router_class": "orion_ray.serving.routers:RoundRobinRouter",
        },
    }
    assert client.post("/internal/deployments/create", json=ok, headers=ADMIN).status_code == 201
