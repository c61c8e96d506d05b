"""Property-based fuzz of the OpenAPI schema (schemathesis), in-process over the ASGI app.

Every operation of ``/openapi.json`` is called with generated valid and invalid input (admin key,
scheduler never started: submissions are stored and queued, nothing runs). Each answer must be no
5xx other than the documented 503 of ``/health``, a documented status code and content type, a body
that matches the declared schema, and every 4xx must carry the contract's error body.
The example count is bounded and generation is derandomized, so a run is quick and repeatable.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.serving.router import ModelRouter
from orion_ray.store import SQLiteStore

from .serving_fakes import LocalServing

ADMIN = {"Authorization": "Bearer admin-key"}
MAX_EXAMPLES = 25  # per operation and generation mode

_DIR = tempfile.mkdtemp(prefix="orion-fuzz-")
_STORE = SQLiteStore(f"{_DIR}/orion.db")
APP = build_app(
    KeyRing([hash_key("admin-key")], {hash_key("t-key"): "t"}),
    backend=Scheduler(_STORE, runtime=FakeRuntime()),
)
# Serving routes over an in-process manager (no Ray) whose versions run the test engine.
_SERVING = LocalServing()
APP.state.serving = _SERVING.client
APP.state.model_router = ModelRouter(_SERVING.client, _SERVING.handle_of)

# Real workloads for the per-workload routes (generated ids alone would only ever see a 404).
SEEDS = [
    {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 0.5}},
    {"workload_type": "job", "entrypoint": "echo hi", "priority": "high"},
]
with TestClient(APP) as _c:
    SEEDED = [_c.post("/api/v1/workloads", json=s, headers=ADMIN).json()["workload_id"] for s in SEEDS]

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES, deterministic=True
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    _STORE.close()
    shutil.rmtree(_DIR, ignore_errors=True)


@schemathesis.check
def contract_error_body(ctx, response, case):
    """Every 4xx answer is ``{"error": {"code", "message", "details"}}`` with the right types."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body!r}"
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, f"error keys: {sorted(err)}"
    assert isinstance(err["code"], str) and err["code"], "empty error code"
    assert isinstance(err["message"], str) and err["message"], "empty error message"
    assert isinstance(err["details"], list), "details is not a list"
    for d in err["details"]:
        assert set(d) == {"field", "problem"}, f"detail keys: {sorted(d)}"
    return True


@schemathesis.check
def no_5xx_but_documented_health(ctx, response, case):
    """No 5xx at all, except ``/health``'s documented 503 (the scheduler is never started here)."""
    if case.operation.path == "/health" and response.status_code == 503:
        return True
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_5xx_but_documented_health,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    contract_error_body,
]


def test_every_route_and_method_is_fuzzed():
    """The fuzz below covers exactly the operations the app publishes."""
    published = {
        (m.upper(), p) for p, ops in TestClient(APP).get("/openapi.json").json()["paths"].items() for m in ops
    }
    fuzzed = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert fuzzed == published
    assert ("POST", "/api/v1/workloads") in fuzzed and ("GET", "/health") in fuzzed


# Inputs that answered 500 before (now 422): the cursor was found by this fuzz, the unpaired
# surrogates by hand (Hypothesis does not generate them), so they are kept as fixed cases.
FOUND = [
    ("GET", "/api/v1/workloads?cursor=9223372036854775808", None),
    ("GET", "/admin/v1/audit?cursor=9223372036854775808", None),
] + [
    ("POST", "/api/v1/workloads", '{"workload_type": "task", "function": "math:floor", %s}' % field)
    for field in (
        '"args": ["\\ud800"]',
        '"kwargs": {"\\udfff": 1}',
        '"runtime_env": {"env_vars": {"A": "\\ud800"}}',
        '"metadata": {"labels": {"a": "\\ud800"}}',
    )
]

# Issue 14: a 500 (memory), or accepted then stored as null (NaN) or unreadable later (200 deep).
FOUND += [
    ("POST", "/api/v1/workloads", '{"workload_type": "task", "function": "math:floor", %s}' % field)
    for field in (
        '"resources": {"memory": %s}' % ("9" * 400),
        '"args": [NaN]',
        '"kwargs": {"x": [1e999]}',
        '"args": %s' % ("[" * 200 + "]" * 200),
    )
]


@pytest.mark.parametrize("method,url,body", FOUND)
def test_former_500s_are_422s(method, url, body):
    r = TestClient(APP).request(
        method, url, content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error" and r.json()["error"]["details"]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_schema_fuzz(case):
    wid = (case.path_parameters or {}).get("workload_id")
    if wid is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        pick = len(str(wid)) % (len(SEEDED) + 1)  # deterministic; the last slot keeps the unknown id
        if pick < len(SEEDED):
            case.path_parameters["workload_id"] = SEEDED[pick]
    case.call_and_validate(headers=ADMIN, checks=CHECKS)
