"""Live: a tenant's burst over its request rate on /v1 is a 429 with Retry-After naming the limit
while another tenant on the same model is unaffected; a tenant's tokens per minute on a model are
enforced; the rate holds at the model's own base URL too; and after some answers the cost report
prices the tenant's serving replica-hours and tokens (docs/serving-limits.md)."""

from __future__ import annotations

import time

import pytest

from orion_ray.cost.prices import PriceTable

from .conftest import PRICES

# the first test also waits for the package's `orion up` and its two deployments
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
BILLED = {"chat": 0, "pub": 0}  # tokens of lima's answers by model, across this module's tests


def ask(c, model: str, max_tokens: int = 4, prompt: str = "hello there"):
    return c.post("/v1/completions", json={"model": model, "prompt": prompt, "max_tokens": max_tokens})


def test_a_burst_over_the_rate_is_429_with_retry_after_and_another_tenant_is_unaffected(live):
    with live.client("lima") as lima, live.client("limb") as limb:
        answers = [ask(lima, "pub") for _ in range(6)]  # 0.2/s in bursts of 3
        codes = [a.status_code for a in answers]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        BILLED["pub"] += sum(a.json()["usage"]["total_tokens"] for a in answers if a.status_code == 200)
        r = ask(lima, "pub")
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 5  # one request at 0.2/s
        err = r.json()["error"]
        assert err["code"] == "rate_limited"
        assert err["details"][0]["field"] == "serving_limits.requests_per_second"
        assert [ask(limb, "pub").status_code for _ in range(3)] == [200, 200, 200]  # limb: no rate limit


def test_tokens_per_minute_on_a_model_are_enforced(live):
    with live.client("limb") as limb:
        codes = []
        for _ in range(8):  # each answer is ~3 prompt + 8 completion tokens against 40 a minute
            codes.append(ask(limb, "pub", max_tokens=8).status_code)
            if codes[-1] == 429:
                break
        assert codes[0] == 200 and codes[-1] == 429, codes
        r = ask(limb, "pub", max_tokens=8)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["details"][0]["field"] == "serving_limits.models.pub.tokens_per_minute"


def test_the_models_own_base_url_holds_the_tenants_rate_and_bills_its_tokens(live):
    """At ``/models/chat/v1`` the model replica is the first hop: the same serving limits hold
    there (its own bucket), and its answers' tokens reach the usage records (the next test)."""
    with live.client("lima") as lima:
        answers = [
            lima.post("/models/chat/v1/completions", json={"prompt": f"own url {i}", "max_tokens": 3})
            for i in range(6)
        ]
    codes = [r.status_code for r in answers]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    err = refused.json()["error"]
    assert err["code"] == "rate_limited"
    assert err["details"][0]["field"] == "serving_limits.requests_per_second"
    BILLED["chat"] += sum(r.json()["usage"]["total_tokens"] for r in answers if r.status_code == 200)


def test_the_cost_report_prices_the_tenants_replica_hours_and_tokens(live):
    with live.client("lima") as lima, live.client("admin") as admin:
        tokens = BILLED["chat"]  # the base URL's answers (the test above) are lima's tokens too
        for i in range(3):  # within lima's burst (the first test spent it ~a minute ago at most)
            r = ask(lima, "chat", max_tokens=6, prompt=f"question {i}")
            if r.status_code == 429:
                time.sleep(int(r.headers["Retry-After"]))
                r = ask(lima, "chat", max_tokens=6, prompt=f"question {i}")
            assert r.status_code == 200, r.text
            tokens += r.json()["usage"]["total_tokens"]
        metrics = admin.get("/metrics").text
        assert 'orion_serving_completion_tokens_total{model="chat",tenant="lima"}' in metrics
        time.sleep(1.5)  # the router reports tokens to the manager every 0.5 s
        # undeploying writes the deployment's last replica-hours and tokens at once
        assert admin.delete("/internal/deployments/chat--v1").status_code == 202
        end = time.monotonic() + 60
        while True:
            body = lima.get("/api/v1/costs?window=1d&aggregate=tenant,kind").json()
            rows = [x for x in body.get("rows", []) if x["kind"] == "replica"]
            if (rows and rows[0]["tokens"] >= tokens) or time.monotonic() > end:
                break
            time.sleep(1)
    assert body["price_version"] == PriceTable.from_config(PRICES).version
    (row,) = rows
    # lima's tokens from the shared ``pub`` are hers too, but ``pub`` stays deployed: they are
    # written at the manager's next minute of records, which may or may not have come yet
    assert row["tenant"] == "lima" and row["tokens"] in (tokens, tokens + BILLED["pub"]), (row, BILLED)
    assert row["cpu_hours"] > 0  # 0.5 vCPU per replica from deploy to undeploy
    expected = row["cpu_hours"] * 36.0 + row["tokens"] * 10.0 / 1000
    assert abs(row["usage_cost"] - expected) <= 0.02, (row, expected)
