"""The control-plane process without its server (issue 17): the workload routes, the dispatcher
against a fake region, the run view, the loop step, a restart, and the CLI's settings. TestClient,
a real SQLite store, no Ray and no sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orion_ray.control_plane.dispatcher import GENERATION_LABEL, SIGNATURE_LABEL, signature
from orion_ray.control_plane.process import credentials, region_key
from orion_ray.control_plane.server import ControlPlaneProcess

JOB = {"workload_type": "job", "entrypoint": "echo hi", "resources": {"cpu": 1}}


class FakeRegions:
    """Answers the dispatcher's POSTs per region URL: a status code (202 gives a workload id)."""

    def __init__(self) -> None:
        self.answer: dict[str, int] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, method: str, url: str, **kw: Any) -> httpx.Response:
        self.calls.append((method, url, kw.get("json") or {}))
        host = url.split("/api/")[0]
        code = self.answer.get(host, 202)
        if code == -1:
            raise httpx.ConnectTimeout("no answer")
        body = {"workload_id": f"wl-{len(self.calls)}"} if code == 202 else {"error": {"code": "x"}}
        return httpx.Response(code, json=body, request=httpx.Request(method, url))


@pytest.fixture
def cp(tmp_path: Path):
    home = tmp_path / "cp"
    admin = credentials(home)["api_key"]
    keys = {n: region_key(home, n) for n in ("east", "west")}
    fake = FakeRegions()

    def start() -> tuple[ControlPlaneProcess, TestClient]:
        proc = ControlPlaneProcess(home, settings={"region_lost_timeout_s": 30})
        proc.dispatcher.http = fake
        return proc, TestClient(proc.app)

    proc, c = start()
    for n in ("east", "west"):
        h = {"Authorization": f"Bearer {keys[n]}"}
        assert (
            c.post(
                f"/api/v1/regions/{n}/join",
                json={"url": f"http://{n}", "dispatch_key": f"{n}-dispatch-key-0123"},
                headers=h,
            ).status_code
            == 200
        )
        hb = {"free_cpus": 8, "labels": {"zone": n}, "free_gpus": {"H100": 2}, "gpu_types": ["H100"]}
        assert c.post(f"/api/v1/regions/{n}/heartbeat", json=hb, headers=h).status_code == 200
    return {
        "proc": proc,
        "c": c,
        "admin": {"Authorization": f"Bearer {admin}"},
        "keys": keys,
        "fake": fake,
        "start": start,
    }


def test_a_pinned_run_is_dispatched_with_its_key_generation_and_signature(cp):
    r = cp["c"].post(
        "/api/v1/workloads",
        json={**JOB, "region": "west", "metadata": {"tenant_id": "acme"}},
        headers=cp["admin"],
    )
    assert r.status_code == 202 and r.json()["region"] == "west" and r.json()["generation"] == 1
    rid = r.json()["workload_id"]
    out = cp["proc"].step()
    assert out["sent"] == {rid: "accepted"}
    method, url, body = cp["fake"].calls[-1]
    assert url == "http://west/api/v1/workloads" and body["metadata"]["request_id"] == f"cp-{rid}-g1"
    labels = body["metadata"]["labels"]
    assert labels[GENERATION_LABEL] == "1"
    assert labels[SIGNATURE_LABEL] == signature("west-dispatch-key-0123", "acme", f"cp-{rid}-g1")
    got = cp["c"].get(f"/api/v1/workloads/{rid}", headers=cp["admin"]).json()
    assert got["region"] == "west" and got["status"] == "submitted" and got["copies"][0]["region_workload_id"]


def test_a_selector_that_matches_no_region_is_429_with_retry_after_and_nothing_kept(cp):
    r = cp["c"].post(
        "/api/v1/workloads", json={**JOB, "region_selector": {"zone": "mars"}}, headers=cp["admin"]
    )
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert cp["c"].get("/api/v1/workloads", headers=cp["admin"]).json()["items"] == []


def test_bad_bodies_are_4xx_naming_the_field(cp):
    c, h = cp["c"], cp["admin"]
    r = c.post("/api/v1/workloads", json={**JOB, "workload_type": "nope"}, headers=h)
    assert r.status_code == 422 and "workload_type" in r.text
    r = c.post("/api/v1/workloads", json={**JOB, "region_selector": ["x"]}, headers=h)
    assert r.status_code == 422 and "region_selector" in r.text
    r = c.post("/api/v1/workloads", json={**JOB, "regions": "east"}, headers=h)
    assert r.status_code == 422 and "regions" in r.text
    assert c.post("/api/v1/workloads", json=JOB).status_code == 401
    assert (
        c.post(
            "/api/v1/regions/east/join", json={"url": "ftp://x", "dispatch_key": "k" * 20}, headers=h
        ).status_code
        == 422
    )


def test_a_refusal_blocks_the_region_and_the_next_tick_places_the_run_elsewhere(cp):
    cp["fake"].answer["http://east"] = 409
    r = cp["c"].post("/api/v1/workloads", json={**JOB, "regions": ["east", "west"]}, headers=cp["admin"])
    rid = r.json()["workload_id"]
    assert r.json()["region"] == "east"
    assert cp["proc"].step()["sent"] == {rid: "refused"}
    out = cp["proc"].step()
    assert out["placed"]["placed"] == {rid: "west"} and out["sent"] == {rid: "accepted"}
    assert cp["fake"].calls[-1][2]["metadata"]["request_id"] == f"cp-{rid}-g2"


def test_an_unreachable_region_is_a_timeout_and_an_invalid_body_fails_the_run(cp):
    cp["fake"].answer["http://east"] = -1
    rid = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "east"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    assert cp["proc"].step()["sent"] == {rid: "timeout"}
    cp["fake"].answer["http://west"] = 422
    rid2 = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "west"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    assert cp["proc"].step()["sent"][rid2] == "failed"
    got = cp["c"].get(f"/api/v1/workloads/{rid2}", headers=cp["admin"]).json()
    assert got["status"] == "failed" and got["reason"].startswith("refused: 422")


def test_status_from_a_region_feeds_the_view_and_direct_runs_are_listed(cp):
    c, h = cp["c"], {"Authorization": f"Bearer {cp['keys']['west']}"}
    rid = c.post("/api/v1/workloads", json={**JOB, "region": "west"}, headers=cp["admin"]).json()[
        "workload_id"
    ]
    cp["proc"].step()
    changes = [
        {
            "seq": 1,
            "workload_id": rid,
            "generation": 1,
            "status": "running",
            "at": 10.0,
            "region_workload_id": "wl-1",
            "tenant_id": "default",
        },
        {
            "seq": 2,
            "workload_id": "wl-direct",
            "status": "queued",
            "at": 11.0,
            "region_workload_id": "wl-direct",
            "tenant_id": "acme",
        },
    ]
    assert c.post("/api/v1/regions/west/status", json={"changes": changes}, headers=h).status_code == 200
    assert (
        c.post("/api/v1/regions/west/status", json={"changes": changes}, headers=h).json()["duplicates"] == 2
    )
    gap = [{**changes[1], "seq": 5, "status": "running"}]
    r = c.post("/api/v1/regions/west/status", json={"changes": gap}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["details"][0]["resync_from"] == 3
    items = {i["workload_id"]: i for i in c.get("/api/v1/workloads", headers=cp["admin"]).json()["items"]}
    assert items[rid]["status"] == "running" and items[rid]["region"] == "west"
    assert items["wl-direct"] == {
        **items["wl-direct"],
        "origin": "region",
        "region": "west",
        "status": "queued",
    }


def test_a_tenant_sees_only_its_own_runs(cp, monkeypatch, tmp_path):
    monkeypatch.setenv("CP_KEY_ACME", "acme-key-0123456789")
    monkeypatch.setenv("CP_KEY_BOB", "bob-key-0123456789")
    proc = ControlPlaneProcess(
        cp["proc"].home,
        settings={
            "tenants": [
                {"id": "acme", "api_key_env": "CP_KEY_ACME"},
                {"id": "bob", "api_key_env": "CP_KEY_BOB"},
            ]
        },
    )
    c = TestClient(proc.app)
    acme, bob = ({"Authorization": f"Bearer {k}-key-0123456789"} for k in ("acme", "bob"))
    rid = c.post("/api/v1/workloads", json=JOB, headers=acme).json()["workload_id"]
    assert (
        c.post("/api/v1/workloads", json={**JOB, "metadata": {"tenant_id": "acme"}}, headers=bob).status_code
        == 403
    )
    assert c.get(f"/api/v1/workloads/{rid}", headers=bob).status_code == 404
    assert c.delete(f"/api/v1/workloads/{rid}", headers=bob).status_code == 404
    assert c.get("/api/v1/workloads", headers=bob).json()["items"] == []
    assert [i["workload_id"] for i in c.get("/api/v1/workloads", headers=acme).json()["items"]] == [rid]


def test_the_same_request_id_returns_the_first_run(cp):
    body = {**JOB, "metadata": {"request_id": "once"}}
    a = cp["c"].post("/api/v1/workloads", json=body, headers=cp["admin"]).json()
    b = cp["c"].post("/api/v1/workloads", json=body, headers=cp["admin"]).json()
    assert a["workload_id"] == b["workload_id"]
    assert len(cp["c"].get("/api/v1/workloads", headers=cp["admin"]).json()["items"]) == 1


def test_cancel_before_a_region_has_it_ends_it_here(cp):
    cp["fake"].answer["http://east"] = 429
    rid = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "east"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    cp["proc"].step()  # throttled: back to waiting
    r = cp["c"].delete(f"/api/v1/workloads/{rid}", headers=cp["admin"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"


def test_a_restart_keeps_runs_endpoints_and_assignments(cp):
    rid = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "east"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    cp["proc"].step()
    cp["proc"].store.close()
    proc, c = cp["start"]()
    got = c.get(f"/api/v1/workloads/{rid}", headers=cp["admin"]).json()
    assert (got["region"], got["generation"], got["status"]) == ("east", 1, "submitted")
    assert proc.book.endpoint("east").url == "http://east"


def test_a_region_key_speaks_for_its_region_only(cp):
    h = {"Authorization": f"Bearer {cp['keys']['east']}"}
    r = cp["c"].post(
        "/api/v1/regions/west/join", json={"url": "http://evil", "dispatch_key": "k" * 20}, headers=h
    )
    assert r.status_code == 403
    assert cp["c"].post("/api/v1/workloads", json=JOB, headers=h).status_code == 401


def test_a_key_made_while_running_is_picked_up_by_the_next_step(cp):
    key = region_key(cp["proc"].home, "south")
    h = {"Authorization": f"Bearer {key}"}
    cp["proc"].step()
    assert (
        cp["c"]
        .post("/api/v1/regions/south/join", json={"url": "http://south", "dispatch_key": "k" * 20}, headers=h)
        .status_code
        == 200
    )


def test_settings_and_home_files_are_private(cp):
    home = cp["proc"].home
    for f in ("credentials.json", "region-keys.json"):
        assert (home / f).stat().st_mode & 0o077 == 0
    assert "east" in json.loads((home / "region-keys.json").read_text()).values()


def test_a_run_cancelled_while_its_dispatch_is_out_is_cancelled_at_the_region(cp):
    rid = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "east"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    fake, c, admin = cp["fake"], cp["c"], cp["admin"]

    def racing(method: str, url: str, **kw: Any) -> httpx.Response:
        if method == "POST":  # the cancel arrives while the region is answering the dispatch
            assert c.delete(f"/api/v1/workloads/{rid}", headers=admin).json()["status"] == "cancelled"
        return fake(method, url, **kw)

    cp["proc"].dispatcher.http = racing
    cp["proc"].step()
    assert [m for m, _, _ in fake.calls] == ["POST", "DELETE"]
    assert c.get(f"/api/v1/workloads/{rid}", headers=admin).json()["status"] == "cancelled"


def test_status_reports_arriving_before_the_regions_202_do_not_cancel_the_run(cp):
    rid = (
        cp["c"]
        .post("/api/v1/workloads", json={**JOB, "region": "east"}, headers=cp["admin"])
        .json()["workload_id"]
    )
    fake, c = cp["fake"], cp["c"]
    east = {"Authorization": f"Bearer {cp['keys']['east']}"}

    def slow_region(method: str, url: str, **kw: Any) -> httpx.Response:
        if method == "POST":  # the agent's status stream is faster than the region's answer
            ch = {"seq": 1, "workload_id": rid, "generation": 1, "status": "queued", "at": 5.0}
            assert (
                c.post("/api/v1/regions/east/status", json={"changes": [ch]}, headers=east).status_code == 200
            )
        return fake(method, url, **kw)

    cp["proc"].dispatcher.http = slow_region
    assert cp["proc"].step()["sent"] == {rid: "accepted"}
    assert [m for m, _, _ in fake.calls] == ["POST"]
    assert c.get(f"/api/v1/workloads/{rid}", headers=cp["admin"]).json()["status"] == "queued"
