"""Tried: property-based fuzz of the live Orion (one real `orion up`): every published operation
with schemathesis-generated valid and invalid input (as a tenant; as the admin for the read-only
routes), a schemathesis stateful run (sequences of linked calls), and our own generators for what
broke Orion before: nesting, numbers (NaN, Infinity, huge integers), unicode and sizes in every
free-form field, each submission read back, listed and cancelled.
Answered: no 5xx. Bounded by example counts (derandomized): two examples per operation and mode
(the in-process twin, with the schema checks, goes wider); the admin's reads in the positive mode
only (its negative cases meet the same validation as the tenant's).
The in-process twin with the schema checks is ``tests/unit/test_fuzz_api.py``.
"""

from __future__ import annotations

import json
import shlex

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 2  # per operation and generation mode: the live run checks the wiring
OWN_EXAMPLES = 100
SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def _harmless(case) -> None:
    """Positive job cases run their entrypoint: keep the generated text, but as an argument to
    ``echo``, so the fuzz never runs a generated shell command."""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and body.get("workload_type") == "job" and isinstance(body.get("entrypoint"), str):
        body["entrypoint"] = "echo " + shlex.quote(body["entrypoint"])[:60000]


def _no_5xx(response, where: str) -> None:
    assert response.status_code < 500, f"{where} answered {response.status_code}: {response.text[:500]}"


def _cancel_unfinished(live) -> None:
    with live.client("admin") as adm:
        for status in ("queued", "starting", "running"):
            for w in adm.get("/api/v1/workloads", params={"status": status, "limit": 1000}).json()["items"]:
                if w["tenant_id"] == "alice":
                    adm.delete(f"/api/v1/workloads/{w['workload_id']}")


def _event_stream(op) -> bool:
    """Whether the operation answers with server-sent events (its 200 says ``text/event-stream``)."""
    ok = op.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in (ok.get("content") or {})


def _fuzz(op, mode, headers: dict, who: str) -> int:
    """Call one operation with generated cases in one mode; returns how many calls were made."""
    calls = 0
    # an event stream never ends by itself: schemathesis reads it until the timeout (each case
    # waited out 60 s) — its status and first events are what is checked
    timeout = 3 if _event_stream(op) else 60

    @settings(max_examples=EXAMPLES_PER_OPERATION, **SETTINGS)
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        nonlocal calls
        _harmless(case)
        calls += 1
        _no_5xx(case.call(headers=headers, timeout=timeout), f"{who} {case.method} {case.path}")

    try:
        run()
    except Unsatisfiable:  # no invalid input exists for this operation (e.g. no parameters)
        pass
    return calls


def test_every_operation_fuzzed_on_the_live_api_answers_no_5xx(live, api_schema):
    calls = 0
    try:
        for op in api_schema.get_all_operations():
            op = op.ok()
            # the admin fuzzes the read-only routes only: its writes would change the shared
            # live Orion (tenants, nodes, deployments) under the other tests
            who_all = ("alice", "admin") if op.method.upper() == "GET" else ("alice",)
            for who in who_all:
                modes = (GenerationMode.POSITIVE,) if who == "admin" else tuple(GenerationMode)
                for mode in modes:
                    calls += _fuzz(op, mode, live.headers(who), who)
    finally:
        _cancel_unfinished(live)
    assert calls > 100


def test_stateful_sequences_on_the_live_api_answer_no_5xx(live, api_schema):
    headers = live.headers("alice")
    seen = []

    class Workflow(api_schema.as_state_machine()):
        def get_call_kwargs(self, case):
            _harmless(case)
            return {"headers": headers, "timeout": 60}

        def validate_response(self, response, case, **kwargs):
            seen.append(response.status_code)
            _no_5xx(response, f"{case.method} {case.path}")

    try:
        run_state_machine_as_test(
            Workflow, settings=settings(max_examples=8, stateful_step_count=6, **SETTINGS)
        )
    finally:
        _cancel_unfinished(live)
    assert seen


# -- our own generators: what broke Orion before, in every free-form field ------------------------
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400, 1e308, -0.0, 5e-324]),
)
text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["", "\x00", "\u202e", "😀" * 5, "a" * 70_000, "null", "NaN"]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, text)


def nested(depth: int):
    """A value nested exactly ``depth`` levels (lists or objects)."""
    v: object = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


values = st.one_of(
    st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
    ),
    st.integers(min_value=0, max_value=260).map(nested),
    st.integers(min_value=0, max_value=12_000).map(lambda n: list(range(n))),
)
FIELDS = ("args", "kwargs", "runtime_env", "labels", "memory", "timeout_s", "cpu")


def _body(field: str, value) -> dict:
    spec: dict = {"workload_type": "task", "function": "math:floor", "priority": "low"}
    spec["resources"] = {"cpu": 0.01}
    if field == "args":
        spec["args"] = value if isinstance(value, list) else [value]
    elif field == "kwargs":
        spec["kwargs"] = {"x": value}
    elif field == "runtime_env":
        spec["runtime_env"] = {"env_vars": {"ORION_FUZZ": value}}
    elif field == "labels":
        spec["metadata"] = {"labels": {"k": value}}
    elif field == "memory":
        spec["resources"]["memory"] = value
    elif field == "cpu":
        spec["resources"]["cpu"] = value
    else:
        spec[field] = value
    return spec


def test_our_generators_nesting_numbers_unicode_sizes_answer_no_5xx(live):
    answered = []
    with live.client("alice") as alice, live.client("admin") as adm:

        @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
        @given(field=st.sampled_from(FIELDS), value=values)
        def run(field, value):
            try:  # NaN/Infinity as JSON's unofficial tokens, as a hostile client sends them
                body = json.dumps(_body(field, value), allow_nan=True)
            except (ValueError, RecursionError):
                return
            r = alice.post("/api/v1/workloads", content=body, headers={"Content-Type": "application/json"})
            _no_5xx(r, f"POST with {field}")
            answered.append(r.status_code)
            assert r.status_code in (202, 400, 413, 422, 429), r.text
            if r.status_code == 202:  # what was accepted is readable, listable and cancellable
                wid = r.json()["workload_id"]
                for resp in (
                    alice.get(f"/api/v1/workloads/{wid}"),
                    alice.delete(f"/api/v1/workloads/{wid}"),
                    adm.get("/api/v1/workloads", params={"limit": 200}),
                ):
                    assert resp.status_code in (200, 202), resp.text
            elif r.status_code == 422:
                assert r.json()["error"]["details"], r.text

        try:
            run()
        finally:
            _cancel_unfinished(live)
        health = httpx.get(live.url + "/health", timeout=30)
        assert health.status_code == 200, health.text
    assert 422 in answered and 202 in answered
