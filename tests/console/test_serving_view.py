"""The serving view in a real browser against a live Orion: alice's model ``console-chat`` with two
versions of the cheap ``test`` engine and a canary release between them, created through REST.
The page shows what REST says (versions, replicas, phase, weights, error rate and latency), the
admin's rollback click rolls the release back, and a tenant's page shows only what ``/v1/models``
gives its key, with no rollback and no admin route called."""

from __future__ import annotations

import math
import time

import pytest

pytestmark = pytest.mark.e2e

MODEL = "console-chat"
CANARY = {
    "model_id": MODEL,
    "strategy": "canary",
    "stable": "v1",
    "candidate": "v2",
    # a long first step and a high bar to judge: the release stays where the test puts it
    "steps": [{"weight": 30, "duration": "1h"}, {"weight": 100, "duration": 0}],
    "success_criteria": {"error_rate": 0.5, "min_requests": 1000},
}


CARD = f'[data-testid="model"][data-model="{MODEL}"]'


@pytest.fixture(scope="module")
def canary(live):
    """Versions v1 and v2 of alice's model, healthy, and a canary at 30 %; undeployed at the end.
    ``deploy_s``: how long deploying both took (reported, not asserted)."""
    t0 = time.time()
    with live.client("admin") as c:
        for v in ("v1", "v2"):
            body = {"model_id": MODEL, "version": v, "engine": "test", "tenant_id": "alice"}
            r = c.post("/internal/deployments/create", json=body)
            assert r.status_code == 201, r.text
        deadline = time.time() + 180
        while time.time() < deadline:
            items = c.get("/internal/deployments", params={"model_id": MODEL}).json()["items"]
            if len(items) == 2 and all(
                d["status"] == "healthy" and d["running_replicas"] == 1 for d in items
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{MODEL} never became healthy: {items}")
        deploy_s = time.time() - t0
        print(f"\n{MODEL}: two test-engine versions healthy in {deploy_s:.1f} s")
        r = c.put(f"/internal/models/{MODEL}/release", json=CANARY)
        assert r.status_code == 200, r.text
        for i in range(6):  # some outcomes, so the stats are not all zero
            r = c.post("/v1/completions", json={"model": MODEL, "prompt": f"hi {i}", "max_tokens": 4})
            assert r.status_code == 200, r.text
    try:
        yield {"deploy_s": deploy_s}
    finally:
        with live.client("admin") as c:
            # all traffic to v1 first: a version with traffic cannot be undeployed
            c.put(
                f"/internal/models/{MODEL}/release",
                json={"model_id": MODEL, "stable": "v1", "weights": {"v1": 100}},
            )
            for v in ("v2", "v1"):
                r = c.delete(f"/internal/deployments/{MODEL}--{v}")
                assert r.status_code in (202, 404), r.text


def test_the_admin_sees_the_model_its_versions_and_the_weights_rest_gives(console, live, canary):
    page = console("admin").open("serving", "serving")
    rel = live.rest("admin", f"/internal/models/{MODEL}/release")
    deps = {d["version"]: d for d in live.rest("admin", f"/internal/deployments?model_id={MODEL}")["items"]}
    c = page.query_selector(CARD)
    assert c is not None, page.inner_text("main")
    assert c.query_selector('[data-testid="owner"]').inner_text() == "tenant alice"
    assert c.query_selector('[data-testid="strategy"]').inner_text() == "canary"
    assert c.query_selector('[data-testid="phase"]').get_attribute("data-phase") == rel["phase"] == "running"
    rows = {r.get_attribute("data-version"): r for r in c.query_selector_all('[data-testid="version"]')}
    assert set(rows) == {"v1", "v2"}
    shown = {
        e.get_attribute("data-version"): float(e.inner_text())
        for e in c.query_selector_all('[data-testid="weight-value"]')
    }
    assert shown == {v: float(w) for v, w in rel["weights"].items()} == {"v1": 70.0, "v2": 30.0}
    # the stacked bar has a segment for each version with traffic, labelled with its weight
    segments = {
        e.get_attribute("data-version"): e.inner_text()
        for e in c.query_selector_all('[data-testid="weight"]')
    }
    assert segments == {"v1": "v1 70 %", "v2": "v2 30 %"}
    for v, row in rows.items():
        d, s = deps[v], rel["stats"][v]
        assert row.query_selector('[data-testid="replicas"]').inner_text() == f"{d['running_replicas']} / 1"
        assert row.query_selector('[data-testid="requests"]').inner_text() == str(s["requests"])
        assert (
            row.query_selector('[data-testid="error-rate"]').inner_text() == f"{s['error_rate'] * 100:.1f} %"
        )
        latency = row.query_selector('[data-testid="latency"]').inner_text()
        assert latency == (
            "—" if s["latency_p95"] is None else f"{math.floor(s['latency_p95'] * 1000 + 0.5):,} ms"
        )
    assert sum(rel["stats"][v]["requests"] for v in ("v1", "v2")) >= 6
    events = {
        (e.get_attribute("data-model"), e.get_attribute("data-kind"))
        for e in page.query_selector_all('[data-testid="event"]')
    }
    assert {(MODEL, "deployed"), (MODEL, "started")} <= events
    print(f"deploying the two versions took {canary['deploy_s']:.1f} s")


def test_the_admins_rollback_click_rolls_the_release_back(console, live, canary):
    with live.client("admin") as cl:  # the canary again, whatever ran before
        assert cl.put(f"/internal/models/{MODEL}/release", json=CANARY).status_code == 200
    page = console("admin").open("serving", "serving")
    c = CARD
    page.click(f'{c} [data-testid="rollback"]')
    # an in-page confirm step: nothing is sent until it is confirmed
    page.wait_for_selector(f'{c} [data-testid="rollback-confirm"]')
    assert live.rest("admin", f"/internal/models/{MODEL}/release")["phase"] == "running"
    page.click(f'{c} [data-testid="rollback-cancel"]')
    page.wait_for_selector(f'{c} [data-testid="rollback"]')
    assert live.rest("admin", f"/internal/models/{MODEL}/release")["phase"] == "running"
    page.click(f'{c} [data-testid="rollback"]')
    page.click(f'{c} [data-testid="rollback-confirm"]')
    result = page.wait_for_selector(f'{c} [data-testid="rollback-result"]', timeout=30_000)
    assert "Rolled back" in result.inner_text()
    rel = live.rest("admin", f"/internal/models/{MODEL}/release")
    assert rel["phase"] == "rolled_back" and rel["weights"] == {"v1": 100, "v2": 0}
    # the page reads the release again and shows the new phase and weights
    page.wait_for_selector(f'{c} [data-testid="phase"][data-phase="rolled_back"]', timeout=30_000)
    shown = {
        e.get_attribute("data-version"): e.inner_text()
        for e in page.query_selector_all(f'{c} [data-testid="weight-value"]')
    }
    assert shown == {"v1": "100", "v2": "0"}
    assert not page.query_selector(f'{c} [data-testid="rollback"]')  # nothing left to roll back
    page.wait_for_selector(
        f'[data-testid="event"][data-model="{MODEL}"][data-kind="rolled_back"]', timeout=30_000
    )


def _tenant_page(console, who):
    tab = console(who)
    called: list[str] = []
    tab.page.on("request", lambda r: called.append(r.url))
    return tab.open("serving", "serving"), called


def test_a_tenant_sees_its_own_model_without_rollback_and_calls_no_admin_route(console, live, canary):
    page, called = _tenant_page(console, "alice")
    rest = live.rest("alice", "/v1/models")["data"]
    cards = {e.get_attribute("data-model"): e for e in page.query_selector_all('[data-testid="model"]')}
    assert set(cards) == {m["id"] for m in rest} and MODEL in cards
    versions = cards[MODEL].inner_text()
    assert "v1" in versions and "v2" in versions
    assert not page.query_selector('[data-testid="rollback"]')
    assert not [u for u in called if "/internal/" in u or "/admin/" in u], called


def test_another_tenant_sees_neither_the_model_nor_a_rollback(console, live, canary):
    page, called = _tenant_page(console, "bob")
    shown = {e.get_attribute("data-model") for e in page.query_selector_all('[data-testid="model"]')}
    assert MODEL not in shown
    assert shown == {m["id"] for m in live.rest("bob", "/v1/models")["data"]}
    main = page.inner_text("main")
    assert MODEL not in main and "alice" not in main
    assert not page.query_selector('[data-testid="rollback"]')
    assert not [u for u in called if "/internal/" in u or "/admin/" in u], called
