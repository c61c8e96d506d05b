"""The region agent (issue 17) over a real SQLite store and a fake HTTP: the transition tail into
the outbox (the control plane's runs told from direct ones, a forged dispatch id not), the cursor
and outbox surviving a restart, resends on a gap, heartbeats, fencing, the drain gate, config
pull and a region without the apply route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import pytest

from orion_ray.api.region_gate import GATE, check_dispatch_allowed
from orion_ray.control_plane.agent import RegionAgent, origin_of
from orion_ray.control_plane.dispatcher import GENERATION_LABEL, SIGNATURE_LABEL, signature
from orion_ray.errors import Conflict
from orion_ray.policy import config_snapshot as cfg
from orion_ray.store.sqlite import SQLiteStore

ADMIN = "region-admin-key-0123456789"


class FakeHttp:
    """Routes ``(method, path)`` to a handler; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.routes: dict[tuple[str, str], Callable[[Any], tuple[int, Any]]] = {
            ("GET", "/admin/v1/infrastructure/nodes"): lambda b: (
                200,
                {
                    "items": [
                        {
                            "schedulable": True,
                            "gpu_type": "H100",
                            "resources": {"GPU": 2, "CPU": 4},
                            "free": {"GPU": 1, "CPU": 3},
                        },
                        {
                            "schedulable": False,
                            "gpu_type": "H100",
                            "resources": {"GPU": 8},
                            "free": {"GPU": 8},
                        },
                    ]
                },
            ),
            ("GET", "/api/v1/queue"): lambda b: (200, {"total_queued": 3}),
            ("POST", "/api/v1/regions/east/join"): lambda b: (200, {"joined": True}),
            ("POST", "/api/v1/regions/east/heartbeat"): lambda b: (200, {"state": "active", "cancel": []}),
            ("POST", "/api/v1/regions/east/status"): lambda b: (200, {"last_seq": b["changes"][-1]["seq"]}),
        }

    def __call__(
        self, method: str, url: str, json: Any = None, headers: Optional[dict] = None, **kw: Any
    ) -> httpx.Response:
        path = "/" + url.split("/", 3)[3].split("?")[0]
        self.calls.append((method, path, json))
        handler = self.routes.get((method, path)) or self.routes.get((method, path.rsplit("/", 1)[0] + "/*"))
        code, body = handler(json) if handler else (404, {"error": {"code": "not_found"}})
        return httpx.Response(code, json=body, request=httpx.Request(method, url))

    def sent(self, path: str) -> list[Any]:
        return [b for m, p, b in self.calls if p == path]


def _add(
    store: SQLiteStore,
    wid: str,
    status: str,
    *,
    rid: Optional[str] = None,
    tenant: str = "acme",
    labels: Optional[dict] = None,
    at: float = 100.0,
) -> None:
    spec = {"workload_type": "job", "entrypoint": "true", "metadata": {"labels": labels or {}}}
    with store._lock, store._tx():
        store._db.execute(
            "INSERT INTO workloads(workload_id, tenant_id, request_id, status, spec, state, rank)"
            " VALUES (?,?,?,?,?,?,0)"
            " ON CONFLICT(workload_id) DO UPDATE SET status=excluded.status",
            (wid, tenant, rid, status, json.dumps(spec), "{}"),
        )
        store._db.execute(
            "INSERT INTO transitions(workload_id, status, at, attempt, reason) VALUES (?,?,?,?,?)",
            (wid, status, at, 0, ""),
        )


def _dispatched(
    store: SQLiteStore, wid: str, run: str, gen: int, status: str, *, tenant: str = "acme"
) -> None:
    rid = f"cp-{run}-g{gen}"
    labels = {GENERATION_LABEL: str(gen), SIGNATURE_LABEL: signature(ADMIN, tenant, rid)}
    _add(store, wid, status, rid=rid, tenant=tenant, labels=labels)


@pytest.fixture
def env(tmp_path: Path):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    http = FakeHttp()

    def agent() -> RegionAgent:
        return RegionAgent(
            region="east",
            control_plane="http://cp",
            region_key="region-key",
            region_url="http://east",
            admin_key=ADMIN,
            store_path=path,
            state_file=tmp_path / "outbox.json",
            http=http,
            labels={"zone": "e"},
        )

    return {"store": store, "http": http, "agent": agent, "tmp": tmp_path}


def test_origin_needs_the_shape_and_the_signature():
    rid = "cp-r1-g2"
    good = {GENERATION_LABEL: "2", SIGNATURE_LABEL: signature(ADMIN, "acme", rid)}
    assert origin_of(rid, "acme", good, ADMIN) == ("r1", 2)
    assert origin_of(rid, "bob", good, ADMIN) is None  # another tenant replaying the label
    assert origin_of(rid, "acme", {**good, SIGNATURE_LABEL: "0" * 32}, ADMIN) is None
    assert origin_of(rid, "acme", {**good, GENERATION_LABEL: "3"}, ADMIN) is None
    assert origin_of("mine", "acme", good, ADMIN) is None


def test_the_tail_sends_every_workloads_changes_with_the_run_and_generation(env):
    _dispatched(env["store"], "wl-1", "r1", 2, "queued")
    _add(env["store"], "wl-2", "running")  # submitted here directly
    _add(
        env["store"],
        "wl-3",
        "queued",
        rid="cp-r9-g1",
        labels={GENERATION_LABEL: "1", SIGNATURE_LABEL: "forged"},
    )
    a = env["agent"]()
    assert a.tail() == 3 and a.send() == 3
    (batch,) = env["http"].sent("/api/v1/regions/east/status")
    by = {c["region_workload_id"]: c for c in batch["changes"]}
    assert (by["wl-1"]["workload_id"], by["wl-1"]["generation"]) == ("r1", 2)
    assert by["wl-2"]["workload_id"] == "wl-2" and "generation" not in by["wl-2"]
    assert by["wl-3"]["workload_id"] == "wl-3" and "generation" not in by["wl-3"]
    assert [c["seq"] for c in batch["changes"]] == [1, 2, 3] and a.outbox.pending == ()


def test_a_restarted_agent_skips_nothing_and_resends_only_the_unacknowledged(env):
    _add(env["store"], "wl-1", "queued")
    a = env["agent"]()
    a.tail()  # the control plane is away: nothing sent
    env["http"].routes[("POST", "/api/v1/regions/east/status")] = lambda b: (200, {"last_seq": 1})
    _add(env["store"], "wl-1", "running")
    b = env["agent"]()  # a restart: cursor and outbox from disk
    assert b.cursor == a.cursor and [c["seq"] for c in b.outbox.pending] == [1]
    b.tail()
    assert [c["seq"] for c in b.outbox.pending] == [1, 2]
    b.send()
    assert [c["seq"] for c in b.outbox.pending] == [2]  # the control plane acknowledged 1 only
    c = env["agent"]()
    assert c.tail() == 0 and [x["seq"] for x in c.outbox.pending] == [2]


def test_a_gap_is_answered_by_resending_from_where_asked(env):
    for i in range(3):
        _add(env["store"], f"wl-{i}", "queued")
    a = env["agent"]()
    a.tail()
    answers = iter([(409, {"error": {"details": [{"resync_from": 2}]}}), (200, {"last_seq": 3})])
    env["http"].routes[("POST", "/api/v1/regions/east/status")] = lambda b: next(answers)
    a.send()
    sent = env["http"].sent("/api/v1/regions/east/status")
    assert [c["seq"] for c in sent[1]["changes"]] == [2, 3] and a.outbox.pending == ()


def test_the_heartbeat_reports_capacity_queue_and_held_runs_and_joins_first(env):
    _dispatched(env["store"], "wl-1", "r1", 1, "queued")
    _dispatched(env["store"], "wl-2", "r2", 1, "completed")
    a = env["agent"]()
    a.tail()
    a.heartbeat()
    assert env["http"].calls[0][1] == "/api/v1/regions/east/join"
    assert env["http"].sent("/api/v1/regions/east/join")[0] == {"url": "http://east", "dispatch_key": ADMIN}
    (hb,) = env["http"].sent("/api/v1/regions/east/heartbeat")
    assert hb["free_gpus"] == {"H100": 1.0} and hb["gpu_types"] == ["H100"] and hb["free_cpus"] == 3.0
    assert hb["queue_depth"] == 3 and hb["assigned"] == [["r1", 1]] and hb["labels"] == {"zone": "e"}
    assert hb["status_seq"] == 2 and hb["applied_config_version"] == 0


def test_fencing_cancels_the_stale_copy_and_a_drain_closes_the_gate(env):
    _dispatched(env["store"], "wl-1", "r1", 1, "queued")
    env["http"].routes[("POST", "/api/v1/regions/east/heartbeat")] = lambda b: (
        200,
        {
            "state": "draining",
            "cancel": [{"workload_id": "r1", "generation": 1}, {"workload_id": "zz", "generation": 4}],
        },
    )
    env["http"].routes[("DELETE", "/api/v1/workloads/*")] = lambda b: (202, {"status": "cancelled"})
    a = env["agent"]()
    a.heartbeat()
    assert [p for m, p, _ in env["http"].calls if m == "DELETE"] == ["/api/v1/workloads/wl-1"]
    assert env["store"].get_setting(GATE)["state"] == "draining"

    class Access:
        reader = env["store"]

    with pytest.raises(Conflict):
        check_dispatch_allowed(Access(), "cp-r5-g1")
    check_dispatch_allowed(Access(), "my-own-request")  # a tenant's own submission still goes in
    check_dispatch_allowed(None, "cp-r5-g1")


def test_a_wanted_config_is_pulled_verified_and_applied_or_left_when_the_region_cannot(env):
    snap = cfg.publish(None, {"pools": {"cpu": {"max_nodes": 3}}})
    env["http"].routes[("POST", "/api/v1/regions/east/heartbeat")] = lambda b: (
        200,
        {"state": "active", "cancel": [], "wanted_config": {"version": snap.version, "sha256": snap.sha256}},
    )
    env["http"].routes[("GET", f"/api/v1/config/snapshots/{snap.version}")] = lambda b: (
        200,
        {"version": snap.version, "sha256": snap.sha256, "text": snap.text()},
    )
    a = env["agent"]()
    a.heartbeat()  # no apply route at the region: logged, nothing applied, nothing raised
    assert ("POST", "/admin/v1/config/apply") in [(m, p) for m, p, _ in env["http"].calls]
    applied: list[Any] = []
    env["http"].routes[("POST", "/admin/v1/config/apply")] = lambda b: (applied.append(b) or 200, {})
    assert a.apply_config(snap.version) is True
    assert (
        json.loads(applied[0]["text"])["pools"] == {"cpu": {"max_nodes": 3}}
        and applied[0]["version"] == snap.version
    )
    env["http"].routes[("GET", f"/api/v1/config/snapshots/{snap.version}")] = lambda b: (
        200,
        {"version": snap.version, "sha256": "0" * 64, "text": snap.text()},
    )
    with pytest.raises(cfg.SnapshotError):
        a.apply_config(snap.version)


def test_a_failing_part_does_not_stop_the_others(env):
    _add(env["store"], "wl-1", "queued")
    env["http"].routes[("POST", "/api/v1/regions/east/status")] = lambda b: (503, {})
    a = env["agent"]()
    a.step()  # status refused, heartbeat still sent
    assert env["http"].sent("/api/v1/regions/east/heartbeat") and len(a.outbox.pending) == 1


def test_launch_health_from_the_store(env):
    _add(env["store"], "wl-1", "submitted", at=1000.0)
    _add(env["store"], "wl-1", "running", at=1004.0)
    _add(env["store"], "wl-2", "submitted", at=1000.0)
    _add(env["store"], "wl-2", "failed", at=1001.0)
    a = env["agent"]()
    a.clock = lambda: 1100.0
    assert a.launch_p95_s() == pytest.approx(4.0) and a.launch_failures() == 1


def test_a_slow_region_api_still_heartbeats_with_the_last_capacity(env):
    a = env["agent"]()
    a.heartbeat()

    def slow(b: Any) -> tuple[int, Any]:
        raise httpx.ReadTimeout("busy")

    env["http"].routes[("GET", "/admin/v1/infrastructure/nodes")] = slow
    a.heartbeat()
    first, second = env["http"].sent("/api/v1/regions/east/heartbeat")
    assert second["free_gpus"] == first["free_gpus"] == {"H100": 1.0} and second["queue_depth"] == 3


def test_a_gpu_pool_at_zero_nodes_still_offers_its_type(env):
    # an autoscaled region whose A100 pool has no node now: the control plane may still send it an
    # A100 run (its autoscaler launches for it); a pool that may not grow offers nothing
    def pools(b: Any) -> tuple[int, Any]:
        spec = {
            "node_resources": {"CPU": 2, "GPU": 4},
            "max_size": 4,
            "labels": {"ray.io/accelerator-type": "A100"},
        }
        return 200, {
            "autoscaler": {
                "pools": [
                    {"pool": "a100", "spec": spec},
                    {
                        "pool": "l4",
                        "spec": {**spec, "max_size": 0, "labels": {"ray.io/accelerator-type": "L4"}},
                    },
                    {"pool": "cpu", "spec": {"node_resources": {"CPU": 8}, "max_size": 9, "labels": {}}},
                ]
            }
        }

    env["http"].routes[("GET", "/admin/v1/infrastructure/health")] = pools
    env["agent"]().heartbeat()
    (hb,) = env["http"].sent("/api/v1/regions/east/heartbeat")
    assert hb["gpu_types"] == ["A100", "H100"] and hb["free_gpus"] == {"H100": 1.0}


def test_a_region_without_the_autoscaler_report_offers_only_its_nodes(env):
    env["http"].routes[("GET", "/admin/v1/infrastructure/health")] = lambda b: (503, {})
    env["agent"]().heartbeat()
    (hb,) = env["http"].sent("/api/v1/regions/east/heartbeat")
    assert hb["gpu_types"] == ["H100"] and hb["free_gpus"] == {"H100": 1.0}
