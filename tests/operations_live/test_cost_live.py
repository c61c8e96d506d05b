"""Live: a workload's usage appears in /api/v1/costs for its tenant at the configured rate, and a
tenant over its daily GPU-hour budget waits with the budget reason in explain (docs/cost.md)."""

from __future__ import annotations

import time

import httpx

from orion_ray.cost.prices import PriceTable

from .conftest import KEYS, PRICES

SLEEP_1S_ON_A_GPU = {
    "workload_type": "task",
    "function": "time:sleep",
    "args": [1],
    "resources": {"cpu": 1, "gpu": 1},
}


def client(live, who: str) -> httpx.Client:
    key = live.admin if who == "admin" else KEYS[who]
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def submit(c: httpx.Client) -> str:
    r = c.post("/api/v1/workloads", json=SLEEP_1S_ON_A_GPU)
    assert r.status_code == 202, r.text
    return r.json()["workload_id"]


def wait_for(c: httpx.Client, wid: str, within_s: float = 180) -> dict:
    """Poll until the workload ends (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + within_s
    while True:
        got = c.get(f"/api/v1/workloads/{wid}").json()
        if got["status"] in ("completed", "failed", "cancelled") or time.monotonic() > end:
            return got
        time.sleep(0.5)


def test_usage_is_priced_at_the_configured_rate_for_its_tenant(live):
    with client(live, "bob") as bob:
        done = wait_for(bob, submit(bob))
        assert done["status"] == "completed", done
        end = time.monotonic() + 90  # the price version is stored at the scheduler's first cost tick
        while True:
            body = bob.get("/api/v1/costs?window=1d&aggregate=tenant,pool,market").json()
            if body.get("price_version") == PriceTable.from_config(PRICES).version or time.monotonic() > end:
                break
            time.sleep(1)
    assert body["price_version"] == PriceTable.from_config(PRICES).version
    assert {r["tenant"] for r in body["rows"]} == {"bob"}
    (row,) = body["rows"]
    assert row["market"] == "on_demand" and row["gpu_hours"] >= 1 / 3600  # it slept a second on one GPU
    # cost = GPU-hours × 36 000 (CPUs free): equal to the cent, up to the rounding of the hours shown
    assert abs(row["usage_cost"] - row["gpu_hours"] * 36000) <= 0.05
    csv_text = httpx.get(
        f"{live.url}/api/v1/costs?window=1d&format=csv", headers={"Authorization": f"Bearer {KEYS['bob']}"}
    ).text
    assert csv_text.splitlines()[0].startswith("tenant,") and "bob" in csv_text


def test_a_tenant_over_its_daily_budget_waits_with_the_reason(live):
    with client(live, "alice") as alice:
        first = wait_for(alice, submit(alice))  # under budget (nothing used yet): it runs
        assert first["status"] == "completed", first
        second = submit(alice)  # after the first one's second on a GPU, alice is over 0.0001 GPU-h
        end = time.monotonic() + 60
        while True:
            explain = alice.get(f"/api/v1/workloads/{second}/explain").json()
            text = str(explain)
            if "budget" in text or time.monotonic() > end:
                break
            time.sleep(0.5)
        assert alice.get(f"/api/v1/workloads/{second}").json()["status"] == "queued"
    assert "tenant alice has used" in text and "of its daily budget of 0.0001 GPU-hours" in text, explain
    with client(live, "admin") as admin:
        assert admin.delete(f"/api/v1/workloads/{second}").status_code in (200, 202)
