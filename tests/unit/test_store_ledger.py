"""The control plane's durable rows (orion_ray/store/ledger.py, schema 8): the global quota ledger
and region records survive a restart; reservations are idempotent by key."""

import sqlite3
import threading

import pytest

from orion_ray.policy.global_quota import GlobalQuota, LedgerConflict, split_gpu_hours
from orion_ray.policy.region_state import Assignment, Heartbeat, on_heartbeat, register, set_state
from orion_ray.store.ledger import ControlPlaneTables, region_from_json, region_to_json
from orion_ray.store.schema import SCHEMA_VERSION
from orion_ray.store.sqlite import SQLiteStore

Q = GlobalQuota("t", concurrent={"gpu": 8}, gpu_hours={"gpu": 10}, window_s=3600)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "cp.db")


def tables(path):
    return ControlPlaneTables(SQLiteStore(path))


def test_schema_8_is_the_latest_and_creates_the_tables(path):
    s = SQLiteStore(path)
    assert SCHEMA_VERSION >= 8  # later migrations (9: cost) follow
    names = {r[0] for r in s._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"quota_reservations", "quota_charges", "regions"} <= names


def test_a_version_7_file_is_migrated_in_place(path):
    s = SQLiteStore(path)
    for t in ("quota_reservations", "quota_charges", "regions"):
        s._db.execute(f"DROP TABLE {t}")
    s._db.execute("PRAGMA user_version=7")
    s.close()
    t = tables(path)
    assert t.store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert t.reserve("k", "t", {"gpu": 1}, quota=Q, now=0).ok


def test_reserve_commit_release_survive_a_restart(path):
    t = tables(path)
    assert t.reserve("k1", "t", {"gpu": 6}, quota=Q, now=0).ok
    t.commit("k1", now=1)
    t.store.close()
    t = tables(path)  # the control plane restarted
    assert t.get("k1").state == "committed"
    assert t.usage("t", now=2, window_s=3600).concurrent == {"gpu": 6.0}
    r = t.reserve("k2", "t", {"gpu": 4}, quota=Q, now=2)
    assert not r.ok and r.reason["code"] == "global_quota"
    t.release("k1", now=3)
    t.store.close()
    t = tables(path)
    assert t.usage("t", now=4, window_s=3600).concurrent == {}
    assert t.reserve("k2", "t", {"gpu": 4}, quota=Q, now=4).ok


def test_reserve_is_idempotent_by_key_and_a_reused_key_conflicts(path):
    t = tables(path)
    first = t.reserve("k", "t", {"gpu": 8, "cpu": 2}, quota=Q, now=0)
    again = t.reserve("k", "t", {"cpu": 2, "gpu": 8}, quota=Q, now=9)
    assert first.ok and again.ok and again.replay and again.reservation.at == 0
    assert t.usage("t", now=9, window_s=3600).concurrent == {"gpu": 8.0, "cpu": 2.0}
    with pytest.raises(LedgerConflict):
        t.reserve("k", "t", {"gpu": 1}, quota=Q, now=9)
    with pytest.raises(LedgerConflict):
        t.reserve("k", "other", {"gpu": 8, "cpu": 2}, quota=None, now=9)


def test_commit_and_release_are_idempotent_and_ordered(path):
    t = tables(path)
    t.reserve("k", "t", {"gpu": 2}, quota=Q, now=0)
    assert t.commit("k", now=1).state == "committed"
    assert t.commit("k", now=2).state == "committed"
    assert t.release("k", now=3).state == "released"
    assert t.release("k", now=4).state == "released"
    with pytest.raises(LedgerConflict):
        t.commit("k", now=5)
    with pytest.raises(KeyError):
        t.release("missing", now=5)
    assert not t.reserve("k", "t", {"gpu": 2}, quota=Q, now=6).ok  # released stays released


def test_gpu_hour_charges_are_totals_per_window_and_survive_a_restart(path):
    t = tables(path)
    t.charge("run-1", "t", split_gpu_hours({"gpu": 2}, 0, 1800, 3600))  # 1 GPU-hour so far
    t.charge("run-1", "t", split_gpu_hours({"gpu": 2}, 0, 1800, 3600))  # a resend
    t.charge("run-2", "t", split_gpu_hours({"gpu": 4}, 1800, 5400, 3600))  # 2 + 2, two windows
    t.store.close()
    t = tables(path)
    assert t.usage("t", now=100, window_s=3600).gpu_hours == {"gpu": 3.0}
    assert t.usage("t", now=3700, window_s=3600).gpu_hours == {"gpu": 2.0}
    t.charge("run-1", "t", split_gpu_hours({"gpu": 2}, 0, 3600, 3600))  # the run went on: 2 in all
    assert t.usage("t", now=100, window_s=3600).gpu_hours == {"gpu": 4.0}
    t.charge("run-3", "t", {0: {"gpu": 6.0}})
    r = t.reserve("k", "t", {"gpu": 1}, quota=Q, now=100)
    assert not r.ok and r.reason["code"] == "global_gpu_hours"
    assert t.reserve("k", "t", {"gpu": 1}, quota=Q, now=3700).ok


def test_two_writers_never_grant_past_the_limit(path):
    a, b = tables(path), tables(path)  # two control-plane replicas on one file
    results = []

    def grab(t, prefix):
        for i in range(8):
            results.append(t.reserve(f"{prefix}{i}", "t", {"gpu": 1}, quota=Q, now=0).ok)

    th = [threading.Thread(target=grab, args=(t, p)) for t, p in ((a, "a"), (b, "b"))]
    for x in th:
        x.start()
    for x in th:
        x.join()
    assert results.count(True) == 8
    assert a.usage("t", now=0, window_s=3600).concurrent == {"gpu": 8.0}


def test_region_records_round_trip_and_survive_a_restart(path):
    t = tables(path)
    r = set_state(register("us-east-1", now=0), "draining")
    hb = Heartbeat(labels={"data": "us"}, free_gpus={"H100": 3.0}, gpu_types=frozenset({"H100", "A100"}))
    r, _ = on_heartbeat(r, hb, now=5)
    r = r.__class__(**{**r.__dict__, "status_seq": 42})
    assert region_from_json(region_to_json(r)) == r
    t.save_region(r, now=5)
    t.save_region(register("eu-west-1", now=1), now=1)
    t.store.close()
    got = tables(path).regions()
    assert [x.name for x in got] == ["eu-west-1", "us-east-1"]
    assert got[1] == r and got[1].state == "draining" and got[1].heartbeat.gpu_types == {"H100", "A100"}


def test_a_demand_is_stored_canonically_and_a_row_needs_every_column(path):
    t = tables(path)
    t.reserve("k", "t", {"gpu": 1}, quota=None, now=0)
    raw = t.store._db.execute("SELECT demand FROM quota_reservations").fetchone()[0]
    assert raw == '{"gpu":1.0}'
    with pytest.raises(sqlite3.IntegrityError):
        t.store._db.execute("INSERT INTO quota_reservations(key) VALUES ('x')")


def test_a_grant_and_its_assignment_are_one_write_and_a_refusal_writes_neither(path):
    t = tables(path)
    a = Assignment("run-1", "us-east-1", 1, "dispatched")
    assert t.reserve("cp-run-1-g1", "t", {"gpu": 8}, quota=Q, now=0, assignment=a).ok
    b = Assignment("run-2", "us-east-1", 1, "dispatched")
    assert not t.reserve("cp-run-2-g1", "t", {"gpu": 1}, quota=Q, now=0, assignment=b).ok
    t.store.close()
    assert tables(path).assignments() == [a]


def test_write_applies_regions_assignments_and_releases_together(path):
    t = tables(path)
    t.reserve("k1", "t", {"gpu": 2}, quota=Q, now=0)
    t.reserve("k2", "t", {"gpu": 2}, quota=Q, now=0)
    rec = register("a", now=0)
    moved = Assignment("run-1", None, 2, "dispatched", retries_left=1, restartable=True)
    t.write(now=5, regions=[rec], assignments=[moved], release=["k1", "k1", "missing"])
    t.store.close()
    t = tables(path)
    assert t.assignments() == [moved] and t.regions() == [rec]
    assert t.get("k1").state == "released" and t.get("k2").state == "reserved"
    with pytest.raises(LedgerConflict):  # nothing half-done: a failing write leaves the rows as they were
        t.commit("k1", now=6, assignment=Assignment("run-9", "a", 1, "submitted"))
    assert [x.run_id for x in t.assignments()] == ["run-1"]
