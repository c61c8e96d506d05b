"""The pure traffic policy: splits, canary steps, blue-green, A/B stickiness, shadow."""

import subprocess
import sys
from collections import Counter

import pytest
from pydantic import ValidationError

from orion_ray.policy import traffic
from orion_ray.policy.traffic import Stats
from orion_ray.serving.specs import ReleaseSpec, parse_duration


def canary(**kw):
    return ReleaseSpec.model_validate(
        {
            "model_id": "m",
            "strategy": "canary",
            "stable": "v1",
            "candidate": "v2",
            "steps": [
                {"weight": 10, "duration": "10s"},
                {"weight": 50, "duration": "10s"},
                {"weight": 100, "duration": 0},
            ],
            "success_criteria": {"error_rate": 0.1, "latency_p95": "500ms", "min_requests": 5},
            **kw,
        }
    )


def test_traffic_and_resilience_import_no_heavy_dependency():
    code = (
        "import sys, orion_ray.policy.traffic, orion_ray.policy.resilience, "
        "orion_ray.serving.cache\n"
        "bad = [m for m in ('ray', 'fastapi', 'starlette') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_canary_advances_step_by_step_then_promotes():
    spec = canary()
    state, ev = traffic.start(spec, now=0)
    assert state.weights == {"v1": 90, "v2": 10} and ev[0].kind == "started"
    good = Stats(requests=20, errors=1, latency_p95=0.1)
    assert traffic.evaluate(spec, state, good, now=5) == (state, [])  # step not over
    state, ev = traffic.evaluate(spec, state, good, now=10)
    assert ev[0].kind == "advanced" and state.weights == {"v1": 50, "v2": 50} and state.since == 10
    state, ev = traffic.evaluate(spec, state, good, now=20)
    assert state.step == 2 and state.weights == {"v1": 0, "v2": 100}
    state, ev = traffic.evaluate(spec, state, good, now=20)
    assert state.phase == traffic.PROMOTED and ev[0].kind == "promoted"
    assert traffic.evaluate(spec, state, Stats(100, 100), now=99) == (state, [])  # final


def test_canary_holds_without_evidence_and_rolls_back_on_errors_or_latency():
    spec = canary()
    state, _ = traffic.start(spec, now=0)
    assert traffic.evaluate(spec, state, Stats(requests=2), now=60)[0] is state  # too few to judge
    bad, ev = traffic.evaluate(spec, state, Stats(requests=10, errors=3), now=3)
    assert bad.phase == traffic.ROLLED_BACK and bad.weights == {"v1": 100, "v2": 0}
    assert ev[0].kind == "rolled_back" and "error rate 30.0%" in ev[0].message
    slow, ev = traffic.evaluate(spec, state, Stats(requests=10, errors=0, latency_p95=0.9), now=3)
    assert slow.phase == traffic.ROLLED_BACK and "latency p95 900 ms" in ev[0].message


def test_blue_green_switches_then_promotes_or_rolls_back():
    spec = ReleaseSpec(
        model_id="m", strategy="blue-green", stable="blue", candidate="green", testing_period="30s"
    )
    state, ev = traffic.start(spec, now=0)
    assert state.weights == {"green": 100, "blue": 0} and state.phase == traffic.TESTING
    assert traffic.evaluate(spec, state, Stats(10, 0), now=10)[0] is state
    done, ev = traffic.evaluate(spec, state, Stats(10, 0), now=31)
    assert done.phase == traffic.PROMOTED
    back, ev = traffic.evaluate(spec, state, Stats(10, 5), now=10)
    assert back.weights == {"blue": 100, "green": 0} and ev[0].kind == "rolled_back"


def test_weighted_pick_follows_the_weights_and_skips_cut_off_versions():
    w = {"v1": 75, "v2": 25}
    counts = Counter(traffic.pick(w, i / 1000) for i in range(1000))
    assert counts == {"v1": 750, "v2": 250}
    assert traffic.pick(w, 0.1, allowed=["v2"]) == "v2"
    assert traffic.pick(w, 0.1, allowed=[]) is None
    assert traffic.pick({"v1": 0}, 0.5) is None


def test_ab_is_sticky_by_header_and_splits_users():
    spec = ReleaseSpec(
        model_id="m", strategy="ab", stable="a", ab={"header": "X-User-Id", "variants": {"a": 50, "b": 50}}
    )
    state, _ = traffic.start(spec, now=0)
    assert traffic.sticky_header(spec) == "x-user-id"
    for user in ("alice", "bob", "carol"):
        seen = {traffic.route(spec, state, draw / 10, user) for draw in range(10)}
        assert len(seen) == 1  # the random draw does not matter once the user is known
    users = Counter(traffic.route(spec, state, 0.0, f"user-{i}") for i in range(2000))
    assert 850 < users["a"] < 1150 and users["a"] + users["b"] == 2000


def test_shadow_takes_its_share():
    spec = ReleaseSpec(model_id="m", stable="v1", shadow={"version": "v3", "percent": 20})
    hits = [traffic.shadow_target(spec, i / 100) for i in range(100)]
    assert hits.count("v3") == 20 and hits.count(None) == 80
    assert spec.versions() == {"v1", "v3"}


def test_stats_of_samples():
    s = Stats.of([(True, 0.1)] * 18 + [(False, 2.0)] * 2)
    assert (s.requests, s.errors, s.error_rate) == (20, 2, 0.1) and s.latency_p95 == 2.0
    assert Stats.of([]) == Stats()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"strategy": "canary", "candidate": "v2"}, "needs steps"),
        ({"strategy": "canary", "steps": [{"weight": 10}]}, "needs a candidate"),
        ({"strategy": "weighted", "weights": {"v1": 120}}, "between 0 and 100"),
        ({"strategy": "ab"}, "ab.variants"),
        ({"strategy": "blue-green", "candidate": "v1"}, "differ"),
        (
            {"strategy": "canary", "candidate": "v2", "steps": [{"weight": 10, "duration": "soon"}]},
            "duration",
        ),
        ({"strategy": "shuffle"}, "strategy"),
    ],
)
def test_bad_releases_are_refused_with_a_reason(body, field):
    with pytest.raises(ValidationError) as e:
        ReleaseSpec.model_validate({"model_id": "m", "stable": "v1", **body})
    assert field in str(e.value)


def test_durations():
    assert parse_duration("250ms") == 0.25 and parse_duration("2m") == 120 and parse_duration(3) == 3
    for bad in ("-1s", "1 week", True, float("inf")):
        with pytest.raises(ValueError):
            parse_duration(bad)
