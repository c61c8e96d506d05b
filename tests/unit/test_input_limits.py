"""No input breaks Orion, no ids leak (issue 14, items 4 and 6), without Ray: the bounds on every
free-form field (422 naming the path), results that are not strict JSON, quarantine of stored
rows no reader can parse (listing, GET, recovery, /health), capped error text and logs, and the
reasons a tenant reads naming no other tenant's workload. The live reproductions are in
``tests/security/test_inputs_and_leaks.py``."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.input_limits import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    MAX_ERROR_CHARS,
    MAX_ITEMS,
    MAX_KEY_CHARS,
    MAX_STRING_CHARS,
    LimitError,
    cap_text,
    check_value,
    strict_json_problem,
)
from orion_ray.models import MAX_MEMORY_BYTES, Resources, Workload, WorkloadSpec, parse_memory
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.runtime.task_runner import run_callable
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.driver import WorkloadDriver
from orion_ray.scheduler.ingest import new_workload
from orion_ray.scheduler.recovery import recover
from orion_ray.scheduler.views import reservation_seen_by
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
TENANT = {"Authorization": "Bearer t-key"}
TASK = {"workload_type": "task", "function": "math:floor", "resources": {"cpu": 0.5}}


def nested(depth: int, leaf=1):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


# -- the bounds themselves --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,path,reason",
    [
        (float("nan"), "x", "NaN"),
        ([1, {"a": float("inf")}], "x.1.a", "NaN"),
        (INT_MAX + 1, "x", "64-bit"),
        (INT_MIN - 1, "x", "64-bit"),
        ("a" * (MAX_STRING_CHARS + 1), "x", "string longer"),
        ({"k" * (MAX_KEY_CHARS + 1): 1}, "x", "key is longer"),
        (list(range(MAX_ITEMS + 1)), "x", "more than"),
        (nested(MAX_DEPTH + 1), "x" + ".0" * MAX_DEPTH, "nested deeper"),
        ({1: 2}, "x", "keys must be strings"),
        (b"bytes", "x", "not a JSON value"),
    ],
)
def test_check_value_names_the_path_and_the_reason(value, path, reason):
    with pytest.raises(LimitError) as e:
        check_value(value, "x")
    assert e.value.path == path and reason in e.value.reason


@pytest.mark.parametrize(
    "value",
    [None, True, 0, INT_MAX, INT_MIN, 1.5, -0.0, "", "😀", nested(MAX_DEPTH), {"a": [1, "b", None]}],
)
def test_check_value_accepts_what_json_carries_within_bounds(value):
    check_value(value, "x")


def test_the_node_budget_bounds_a_wide_and_deep_value():
    wide = [list(range(MAX_ITEMS)) for _ in range(11)]  # 110k values, each list within bounds
    with pytest.raises(LimitError, match="values in one field"):
        check_value(wide, "args")


def test_cap_text_marks_what_it_cut_and_keeps_the_head_or_the_tail():
    assert cap_text("short", 10) == "short" and cap_text(None) is None
    head = cap_text("a" * 50 + "b" * 50, 50)
    assert head.startswith("a" * 50) and "truncated by Orion: 50 more" in head and "b" * 2 not in head
    tail = cap_text("a" * 50 + "b" * 50, 50, keep="tail")
    assert tail.endswith("b" * 50) and "truncated by Orion" in tail and "a" * 2 not in tail


# -- at the door --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value,path",
    [
        ("args", [1, float("nan")], "args.1"),
        ("kwargs", {"x": {"y": float("-inf")}}, "kwargs.x.y"),
        ("args", nested(200), "args" + ".0" * MAX_DEPTH),
        ("runtime_env", {"env_vars": {"A": "x" * (MAX_STRING_CHARS + 1)}}, "runtime_env.env_vars.A"),
        ("args", [2**64], "args.0"),
    ],
)
def test_a_spec_over_a_bound_is_refused_naming_the_path(field, value, path):
    with pytest.raises(ValidationError) as e:
        WorkloadSpec.model_validate({**TASK, field: value})
    (err,) = e.value.errors()
    assert err["ctx"]["path"] == path


def test_a_spec_read_back_from_the_store_is_not_walked_again():
    spec = WorkloadSpec.model_validate({**TASK, "args": nested(MAX_DEPTH)})
    again = WorkloadSpec.model_validate_json(spec.model_dump_json(), context={"stored": True})
    assert again.args == spec.args


@pytest.mark.parametrize("value", [10**400, 2**63, MAX_MEMORY_BYTES + 1, "9" * 400, "1e999", 1e300])
def test_a_huge_memory_is_a_clear_value_error_not_an_overflow(value):
    with pytest.raises(ValueError, match="memory"):
        parse_memory(value)
    with pytest.raises(ValidationError):
        Resources(memory=value)


def test_memory_still_reads_exact_bytes_and_sizes():
    assert parse_memory(MAX_MEMORY_BYTES) == MAX_MEMORY_BYTES
    assert parse_memory("8Gi") == 8 * 2**30 and parse_memory(1.5e9) == 1_500_000_000


def test_labels_are_bounded():
    with pytest.raises(ValidationError, match="at most 64 labels"):
        WorkloadSpec.model_validate({**TASK, "metadata": {"labels": {str(i): "v" for i in range(65)}}})
    with pytest.raises(ValidationError, match="longer than 1024"):
        WorkloadSpec.model_validate({**TASK, "metadata": {"labels": {"k": "v" * 1025}}})


@pytest.fixture
def api(tmp_path):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    access = StoreAccess(path, max_queue_size=1000)
    app = build_app(
        KeyRing([hash_key("admin-key")], {hash_key("t-key"): "t"}),
        backend=Scheduler(store, runtime=FakeRuntime()),
        access=access,
    )
    yield TestClient(app), store, access
    access.close()
    store.close()


@pytest.mark.parametrize(
    "fragment,field",
    [
        ('"args": [NaN]', "args.0"),
        ('"kwargs": {"a": [Infinity]}', "kwargs.a.0"),
        ('"input": -Infinity', "input"),
        ('"args": %s' % ("[" * 200 + "]" * 200), "args" + ".0" * MAX_DEPTH),
        ('"resources": {"memory": %s}' % ("9" * 400), "resources.memory"),
        ('"resources": {"memory": NaN}', "resources.memory"),
        ('"max_retries": 1e400', "max_retries"),
        ('"args": [1E999]', "args.0"),
        ('"timeout_s": Infinity', "timeout_s"),
        ('"args": [-99999999999999999999]', "args.0"),
    ],
)
def test_the_api_answers_422_with_the_field_path(api, fragment, field):
    client, _, _ = api
    body = '{"workload_type": "task", "function": "math:floor", %s}' % fragment
    r = client.post("/api/v1/workloads", content=body, headers={**TENANT, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["error"]["details"]}


def test_a_body_nested_past_the_json_parser_is_a_400_not_a_500(api):
    client, _, _ = api
    body = '{"workload_type": "task", "function": "math:floor", "args": %s}' % ("[" * 100_000 + "]" * 100_000)
    r = client.post("/api/v1/workloads", content=body, headers={**TENANT, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text


# -- results ------------------------------------------------------------------------------------
def test_strict_json_problem_names_nan_infinity_depth_and_non_json():
    assert strict_json_problem({"a": [1, "x", None]}) is None
    for bad in (float("nan"), [float("inf")], nested(100), {1, 2}, 2**70):
        assert "not valid JSON" in strict_json_problem(bad)


@pytest.mark.parametrize("args", [["NaN"], ["[" * 80 + "]" * 80], ["Infinity"]])
def test_the_task_runner_reports_a_result_json_cannot_carry_as_a_failure(args):
    out = run_callable("json:loads", args, {}, 1_000_000, 10_000)
    assert out["ok"] is False and "not valid JSON" in out["error"]


def test_the_task_runner_marks_truncated_output():
    out = run_callable("builtins:print", ["x" * 5000], {}, 1_000_000, 1024, allowed_modules=("builtins",))
    assert "truncated by Orion" in out["logs"] and len(out["logs"]) < 1200


def _stored(store: SQLiteStore, tenant="t", **spec) -> Workload:
    w = new_workload(WorkloadSpec.model_validate({**TASK, **spec}), tenant, time.time())
    return store.submit(w, who=tenant, max_queue_size=1000)[0]


def test_a_nan_result_reaching_the_store_is_stored_as_an_error_and_reads_back(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    w = _stored(store)
    w.status, w.result = Status.COMPLETED, float("nan")
    store.update(w, None)
    back = store.get(w.workload_id)
    assert back.result is None and "not valid JSON" in back.error
    json.dumps(back.public(), allow_nan=False)  # answerable
    store.close()


# -- quarantine ---------------------------------------------------------------------------------
def _poison(store: SQLiteStore, like: Workload, wid: str, status: str = "queued") -> None:
    """A row an older Orion let in: ``args`` 200 deep (pydantic's JSON parser refuses it)."""
    spec = json.loads(like.spec.model_dump_json())
    spec["args"] = nested(200)
    state = store._query("SELECT state FROM workloads WHERE workload_id=?", (like.workload_id,))[0][0]
    with store._lock:
        store._db.execute(
            "INSERT INTO workloads(workload_id, tenant_id, request_id, status, spec, state, rank) "
            "VALUES (?,?,?,?,?,?,?)",
            (wid, like.tenant_id, None, status, json.dumps(spec), state, 2),
        )


def test_an_unreadable_row_never_blocks_listing_nor_shortens_a_page(tmp_path):
    path = str(tmp_path / "o.db")
    store = SQLiteStore(path)
    first = _stored(store)
    _poison(store, first, "wl-bad-1", status="completed")
    _poison(store, first, "wl-bad-2", status="completed")
    last = _stored(store)
    reader = SQLiteStore(path, read_only=True)
    page = reader.list(limit=2)
    assert [w.workload_id for w in page] == [last.workload_id, first.workload_id]
    assert reader.get("wl-bad-1") is None and reader.get(first.workload_id) is not None
    assert reader.quarantined_count() == 2
    reader.close()
    store.close()


def test_the_writer_ends_an_unreadable_unfinished_row_so_it_no_longer_counts(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    good = _stored(store)
    _poison(store, good, "wl-bad")
    assert store.count_active() == 2
    assert [w.workload_id for w in store.active()] == [good.workload_id]
    assert store.count_active() == 1 and store.history("wl-bad")[-1]["status"] == "failed"
    assert any(e["action"] == "quarantine" for e in store.audit_log())
    store.close()


def test_recovery_skips_an_unreadable_row_and_health_reports_it(api):
    client, store, access = api
    good = _stored(store)
    _poison(store, good, "wl-bad")
    sched = Scheduler(store, runtime=FakeRuntime())
    counts = asyncio.run(
        recover(
            store=store,
            runtime=sched.runtime,
            book=sched.book,
            driver=sched.driver,
            observe=sched.observe,
            clock=time.time,
        )
    )
    assert counts["queued"] == 1 and list(sched.book.active) == [good.workload_id]
    assert client.get("/api/v1/workloads", headers=ADMIN).status_code == 200
    assert client.get("/api/v1/workloads", headers=TENANT).status_code == 200
    health = client.get("/health", headers=ADMIN).json()
    assert health["quarantined_reads"] >= 1


# -- what a tenant reads --------------------------------------------------------------------------
def test_error_text_is_capped_with_a_mark_when_set(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    sched = Scheduler(store, runtime=FakeRuntime())
    w = _stored(store)
    sched.book.active[w.workload_id] = w
    sched.book.set(w, Status.FAILED, "failed", error="E" * 100_000)
    assert len(w.error) < MAX_ERROR_CHARS + 100 and "truncated by Orion" in w.error
    assert "truncated by Orion" in store.get(w.workload_id).error
    store.close()


def _book(*workloads):
    return SimpleNamespace(active={w.workload_id: w for w in workloads})


def _w(wid, tenant):
    return SimpleNamespace(workload_id=wid, tenant_id=tenant)


def test_a_preemption_reason_names_only_the_tenants_own_workload():
    driver = SimpleNamespace(book=_book(_w("wl-a2", "a"), _w("wl-b1", "b")))
    why = WorkloadDriver.preempted_for
    victim = _w("wl-a1", "a")
    assert why(driver, victim, "wl-a2") == "preempted for wl-a2"
    assert "wl-b1" not in why(driver, victim, "wl-b1") and "another tenant" in why(driver, victim, "wl-b1")
    assert "another tenant" in why(driver, victim, "wl-gone")  # ended since: still not named
    assert why(driver, victim, "drain of node n1") == "preempted for drain of node n1"


def test_the_queue_shows_a_tenant_another_tenants_reservation_without_its_id():
    held = {"workload_id": "wl-b1", "nodes": ["n1"], "expected_at": 5.0}
    sched = SimpleNamespace(reservation=held, book=_book(_w("wl-b1", "b")))
    assert reservation_seen_by(sched, None) == held  # the admin
    assert reservation_seen_by(sched, "b") == held  # its own
    seen = reservation_seen_by(sched, "a")
    assert seen["workload_id"] is None and seen["of_another_tenant"] and "wl-b1" not in str(seen)


def test_a_reserved_wait_reason_names_no_workload():
    from orion_ray.policy import admission

    src = admission.CyclePass._why_not.__code__.co_consts
    assert not any(isinstance(c, str) and "workload_id" in c for c in src)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/admin/v1/reload", '{"tenants": [{"id": "a", "quota": {"cpu": Infinity}}]}', "tenants.0.quota.cpu"),
        ("/admin/v1/reload", '{"tenants": [{"id": "a", "weight": 1e999}]}', "tenants.0.weight"),
        ("/v1/chat/completions", '{"model": "m", "messages": [], "temperature": NaN}', "temperature"),
    ],
)
def test_nan_or_infinity_in_any_json_body_is_a_422_naming_where(api, path, body, field):
    client, _, _ = api
    r = client.post(path, content=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


def test_the_text_nan_inside_a_string_is_just_text(api):
    client, _, _ = api
    body = '{"workload_type": "task", "function": "math:floor", "args": ["NaN", "Infinity"]}'
    r = client.post("/api/v1/workloads", content=body, headers={**TENANT, "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
