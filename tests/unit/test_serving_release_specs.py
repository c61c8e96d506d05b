"""Release settings as the original writes them (issue 15, item 4): its YAML forms loaded verbatim
through the path a user's ``orion deploy -f`` takes (the CLI's reader, then the release route),
the strings read into typed criteria, and every malformed value a 422 naming its field."""

from pathlib import Path

import pytest

from orion_ray.serving.cli import documents
from orion_ray.serving_specs import ReleaseSpec, parse_count, parse_rate

from .test_api import assert_error
from .test_serving_api import ADMIN, deploy, env  # noqa: F401  (env: the shared fixture)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "original_releases.yaml"


@pytest.fixture(scope="module")
def api():
    """One app for the many refusals (validation happens before the manager is asked)."""
    from fastapi.testclient import TestClient

    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key

    from .serving_fakes import LocalServing

    app = build_app(KeyRing([hash_key("admin-key")], {}))
    app.state.serving = LocalServing().client
    with TestClient(app) as client:
        yield client


def _releases():
    deployments, releases = documents(FIXTURE.read_text())
    assert deployments == [] and len(releases) == 6
    return releases


def test_the_originals_yaml_forms_are_accepted_as_written_through_the_release_route(env):  # noqa: F811
    client, serving, _, _ = env
    deploy(client, version="v1", replicas=4)
    deploy(client, version="v2")
    seen = []
    for body in _releases():
        r = client.put("/internal/models/chat/release", headers=ADMIN, json=body)
        assert r.status_code == 200, (body, r.text)
        seen.append(r.json()["spec"])
    rolling, rolling_pct, bg, bg_flat, canary, steps = seen
    assert rolling["strategy"] == "rolling" and rolling["rolling"] == {
        "max_surge": 1,
        "max_unavailable": 0,
        "progress_deadline": 600.0,
    }
    assert rolling_pct["rolling"]["max_surge"] == "25%" and rolling_pct["rolling"]["max_unavailable"] == "25%"
    assert bg["testing_period"] == 600 and bg["rollback_on_error"] is True
    assert bg["success_criteria"]["error_rate"] == pytest.approx(0.01)
    assert bg["success_criteria"]["latency_p95"] == pytest.approx(0.5)
    assert bg_flat["testing_period"] == 1800 and bg_flat["success_criteria"]["latency_p95"] == 2.0
    assert bg_flat["success_criteria"]["error_rate"] == pytest.approx(0.005)
    assert [(s["weight"], s["duration"]) for s in canary["steps"]] == [(10, 300), (50, 600), (100, 0)]
    assert [s["weight"] for s in steps["steps"]] == [5, 25, 100]


def test_a_spec_dumped_and_read_back_is_the_same_release():
    for body in _releases():
        spec = ReleaseSpec.model_validate(body)
        assert ReleaseSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"rolling": {"maxSurge": "150%"}}, "maxSurge"),
        ({"rolling": {"maxSurge": -1}}, "maxSurge"),
        ({"rolling": {"maxSurge": "lots"}}, "maxSurge"),
        ({"rolling": {"maxUnavailable": True}}, "maxUnavailable"),
        ({"rolling": {"maxSurge": 0, "maxUnavailable": "0%"}}, "rolling"),
        ({"rolling": {"progressDeadline": "soon"}}, "progressDeadline"),
        ({"rolling": {"maxsurge": 1}}, "maxsurge"),
        ({"strategy": "canary", "rolling": {"maxSurge": 1}, "steps": [{"weight": 10}]}, "rolling"),
        ({"strategy": "blue-green", "blue_green": {"rollback_on_error": "maybe"}}, "rollback_on_error"),
        ({"strategy": "blue-green", "blue_green": {"testing_period": "forever"}}, "testing_period"),
        ({"strategy": "blue-green", "success_criteria": {"error_rate": "< lots"}}, "error_rate"),
        ({"strategy": "blue-green", "success_criteria": {"error_rate": "> 1%"}}, "error_rate"),
        ({"strategy": "blue-green", "success_criteria": {"error_rate": "< 200%"}}, "error_rate"),
        ({"strategy": "blue-green", "success_criteria": {"latency_p95": "< fast"}}, "latency_p95"),
        ({"strategy": "canary", "canary": {"steps": [{"weight": 150, "duration": "1m"}]}}, "weight"),
        ({"strategy": "canary", "canary": {"steps": [{"weight": 10, "duration": "a while"}]}}, "duration"),
        ({"strategy": "canary", "canary": {"steps": []}}, "steps"),
    ],
)
def test_malformed_release_settings_are_422_naming_the_field(api, patch, field):
    client = api
    body = {"model_id": "chat", "stable": "v1", "candidate": "v2", "strategy": "rolling", **patch}
    err = assert_error(
        client.put("/internal/models/chat/release", headers=ADMIN, json=body), 422, "validation_error"
    )
    named = " ".join(str(d.get("field", "")) + " " + str(d.get("problem", "")) for d in err["details"])
    assert field in named, err


def test_rates_and_counts_read_as_the_original_writes_them():
    assert parse_rate("< 1%") == pytest.approx(0.01) and parse_rate("<= 2.5%") == pytest.approx(0.025)
    assert parse_rate("0.02") == pytest.approx(0.02) and parse_rate(0.3) == 0.3
    assert parse_count(2) == 2 and parse_count("25%") == "25%" and parse_count(" 3 ") == 3


def test_rolling_without_settings_replaces_replicas_one_at_a_time_and_with_steps_shifts_traffic():
    plain = ReleaseSpec.model_validate(
        {"model_id": "m", "stable": "a", "candidate": "b", "strategy": "rolling"}
    )
    assert plain.replaces_replicas() and plain.rolling is not None and plain.rolling.max_surge == 1
    stepped = ReleaseSpec.model_validate(
        {"model_id": "m", "stable": "a", "candidate": "b", "strategy": "rolling", "steps": [{"weight": 50}]}
    )
    assert not stepped.replaces_replicas()
    assert (
        ReleaseSpec.model_validate(
            {"model_id": "m", "stable": "a", "candidate": "b", "strategy": "blue_green"}
        ).strategy
        == "blue-green"
    )
