"""The model replica as the first hop, live: a model's own OpenAI base URL (``/models/{id}/v1``)
on the same port and keys as Orion's API, beside the ``/v1`` routes (see docs/serving-hop.md)."""

from __future__ import annotations

import json

import pytest

from .conftest import HOP as MODEL
from .conftest import until

pytestmark = pytest.mark.e2e

BASE = f"/models/{MODEL}/v1"
VERSION = "x-orion-model-version"


def test_the_base_url_answers_with_the_version_header_and_streams(live):
    with live.client("alice") as c:
        r = c.post(f"{BASE}/completions", json={"model": MODEL, "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert r.headers[VERSION] in ("v1", "v2") and r.json()["object"] == "text_completion"
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
        with c.stream("POST", f"{BASE}/chat/completions", json=chat) as s:
            assert s.status_code == 200 and s.headers[VERSION] in ("v1", "v2")
            assert s.headers["content-type"].startswith("text/event-stream")
            events = [ln[6:] for ln in s.iter_lines() if ln.startswith("data: ")]
        assert events[-1] == "[DONE]" and len(events) >= 4
        words = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert len(words.split()) == 5
        bad = c.post(f"{BASE}/completions", json={"prompt": "x", "max_tokens": 100_000})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "max_tokens"


def test_a_wrong_key_is_401_and_another_tenants_model_is_404(live):
    with live.client("not-a-key") as c:
        r = c.post(f"{BASE}/completions", json={"prompt": "hello", "max_tokens": 2})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with live.client("bob") as c:
        r = c.post(f"{BASE}/completions", json={"prompt": "hello", "max_tokens": 2})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert c.get(f"{BASE}/models").status_code == 404
    with live.client("admin") as c:  # an admin key sees every model
        assert c.post(f"{BASE}/completions", json={"prompt": "hello", "max_tokens": 2}).status_code == 200


def test_a_ten_percent_canary_split_is_observed_at_the_base_url(live):
    with live.client("alice") as c:
        seen = [
            c.post(f"{BASE}/completions", json={"prompt": f"p{i}", "max_tokens": 2}).headers[VERSION]
            for i in range(300)
        ]
        assert set(seen) == {"v1", "v2"}
        assert 0.03 <= seen.count("v2") / len(seen) <= 0.2  # 10 %, binomial sd 1.7 % at 300
    with live.client("admin") as c:  # the outcomes (the forwarded share's too) reach the manager

        def reported():
            stats = c.get(f"/internal/models/{MODEL}/release").json()["stats"]
            return stats["v2"]["requests"] >= seen.count("v2") and stats["v1"]["requests"] >= seen.count("v1")

        until("the first hop's outcomes in the release's stats", reported, 30)


def test_the_v1_routes_still_answer_for_the_same_model(live):
    with live.client("alice") as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 200 and r.headers[VERSION] in ("v1", "v2")
        direct = c.post(f"{BASE}/completions", json={"prompt": "hello", "max_tokens": 4, "temperature": 0})
        via_v1 = c.post(
            "/v1/completions", json={"model": MODEL, "prompt": "hello", "max_tokens": 4, "temperature": 0}
        )
        assert direct.json()["choices"][0]["text"] == via_v1.json()["choices"][0]["text"]
    with live.client("bob") as c:
        assert c.post("/v1/completions", json={"model": MODEL, "prompt": "x"}).status_code == 404
