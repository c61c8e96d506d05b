"""Backups around the core: the config block, the pure decisions, the scheduled loop (fake clock),
the admin REST routes, S3 (a moto server on loopback) and the Litestream replica."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.backup.actor import RETRY_S, BackupLoop
from orion_ray.backup.base import RestoreRefused, SnapshotRejected
from orion_ray.backup.manifest import (
    Manifest,
    metrics_text,
    name_time,
    next_due,
    snapshot_name,
    to_prune,
)
from orion_ray.backup.service import list_backups, restore, take_backup
from orion_ray.backup_config import BackupConfig, parse_duration
from orion_ray.config import OrionConfig
from orion_ray.errors import ConfigError
from orion_ray.store import SQLiteStore

from .backup_support import config, fill


# -- config ----------------------------------------------------------------------------------------
def test_the_backup_block_takes_durations_and_defaults():
    cfg = OrionConfig.model_validate(
        {
            "orion": {
                "backup": {
                    "enabled": True,
                    "interval": "1h",
                    "keep": 24,
                    "replica": {"sync_interval": "500ms"},
                }
            }
        }
    )
    b = cfg.orion.backup
    assert (b.interval, b.keep, b.replica.sync_interval, b.replica.enabled) == (3600.0, 24, 0.5, False)
    assert BackupConfig().interval == 3600.0 and BackupConfig().enabled is False
    assert parse_duration("15m") == 900 and parse_duration(90) == 90 and parse_duration("1d") == 86400


@pytest.mark.parametrize(
    "block, field",
    [
        ({"interval": "soon"}, "interval"),
        ({"interval": 0}, "interval"),
        ({"keep": 0}, "keep"),
        ({"unknown": 1}, "unknown"),
        ({"replica": {"enabled": True}}, "replica"),
        ({"replica": {"url": "ftp://x"}}, "url"),
        ({"s3": {"bucket": "Bad_Bucket"}}, "bucket"),
    ],
)
def test_a_bad_backup_block_is_refused_with_the_field(tmp_path, block, field):
    import yaml

    from orion_ray.config import load_config

    path = tmp_path / "orion.yaml"
    path.write_text(yaml.safe_dump({"orion": {"backup": block}}))
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    assert any(field in d["field"] or field in d["problem"] for d in exc.value.details), exc.value.details


# -- pure decisions --------------------------------------------------------------------------------
def test_names_sort_by_time_and_carry_it():
    a, b = snapshot_name(1_800_000_000.25, "0001"), snapshot_name(1_800_000_001.0, "0000")
    assert a < b and name_time(a) == pytest.approx(1_800_000_000.25) and name_time("x.db") is None


def test_to_prune_keeps_the_newest_and_ignores_foreign_names():
    names = [snapshot_name(1_800_000_000.0 + i, "abcd") for i in range(5)] + ["notes.txt"]
    assert to_prune(names, 2) == names[:3]
    assert to_prune(names, 10) == [] and to_prune(names, 0) == names[:4]  # never below one


def test_next_due_counts_from_the_newest_snapshot():
    assert next_due(None, 3600, 1000.0) == 1000.0
    assert next_due(900.0, 3600, 1000.0) == 4500.0
    assert next_due(5000.0, 60, 1000.0) == 1060.0  # a snapshot "from the future": clock stepped back


def test_metrics_text_has_the_time_and_age():
    text = metrics_text(100.0, 160.5)
    assert "orion_backup_last_success_timestamp 100.000" in text and "orion_backup_age_seconds 60.500" in text
    samples = [line for line in metrics_text(None, 1.0).splitlines() if not line.startswith("#")]
    assert samples == []


@pytest.mark.parametrize(
    "text, why",
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"name": "x"}', "lacks"),
        ('{"format": 99}', "lacks"),
    ],
)
def test_a_bad_manifest_says_why(text, why):
    with pytest.raises(ValueError, match=why):
        Manifest.from_json(text)


# -- the scheduled loop ----------------------------------------------------------------------------
class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_loop_takes_one_per_interval_and_keeps_n(tmp_path):
    cfg = config(tmp_path, enabled=True, interval="1h", keep=3)
    store = SQLiteStore(cfg.orion.store.resolved_path())
    fill(store, 3)
    clock = Clock(1_800_000_000.0)
    loop = BackupLoop(cfg, clock=clock)
    assert loop.run_once() == 3600 and loop.taken == 1  # none yet: at once
    clock.t += 10
    assert loop.run_once() == pytest.approx(3590, abs=0.01) and loop.taken == 1
    for _ in range(5):
        clock.t += 3600
        loop.run_once()
    assert loop.taken == 6 and len(list_backups(cfg)["items"]) == 3
    # a new loop (the actor restarted) counts from the newest snapshot: no burst
    assert BackupLoop(cfg, clock=clock).run_once() == pytest.approx(3600, abs=0.01)
    st = loop.status()
    assert st["failures"] == 0 and st["last_success_timestamp"] == pytest.approx(clock.t, abs=0.01)
    store.close()


def test_a_failed_snapshot_never_ends_the_loop(tmp_path, caplog):
    cfg = config(tmp_path, enabled=True, interval="1h")  # no store file: every snapshot fails
    loop = BackupLoop(cfg, clock=Clock(1_800_000_000.0))
    with caplog.at_level(logging.ERROR, "orion.backup"):
        assert loop.run_once() == RETRY_S and loop.run_once() == RETRY_S
    assert loop.failures == 2 and "no store" in loop.status()["last_error"]


# -- the admin routes ------------------------------------------------------------------------------
ADMIN = {"Authorization": "Bearer admin-key"}
TENANT = {"Authorization": "Bearer acme-key"}


@pytest.fixture
def api(tmp_path):
    cfg = config(tmp_path, keep=2)
    store = SQLiteStore(cfg.orion.store.resolved_path())
    fill(store, 5)
    app = build_app(KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"}), backend=None)
    app.state.backup_config = cfg
    with TestClient(app) as c:
        yield c, cfg
    store.close()


def test_post_takes_a_snapshot_and_get_lists_them(api):
    c, cfg = api
    names = []
    for _ in range(3):
        r = c.post("/admin/v1/backups", headers=ADMIN)
        assert r.status_code == 201, r.text
        assert r.json()["workloads"] == 5 and r.json()["targets"] == [cfg.orion.backup.dir]
        names.append(r.json()["name"])
    got = c.get("/admin/v1/backups", headers=ADMIN).json()
    assert [i["name"] for i in got["items"]] == names[:0:-1]  # keep: 2, newest first
    assert got["age_s"] is not None and got["age_s"] < 3600
    m = c.get("/metrics").text
    assert "orion_backup_last_success_timestamp" in m and "orion_backup_age_seconds" in m


def test_the_routes_are_the_admins_only(api):
    c, _ = api
    assert c.post("/admin/v1/backups", headers=TENANT).status_code == 403
    assert c.get("/admin/v1/backups", headers=TENANT).status_code == 403
    assert c.get("/admin/v1/backups").status_code == 401


def test_without_a_store_file_here_the_routes_say_so():
    app = build_app(KeyRing([hash_key("admin-key")]), backend=None)
    with TestClient(app) as c:
        r = c.post("/admin/v1/backups", headers=ADMIN)
    assert r.status_code == 404 and "not configured" in r.json()["error"]["message"]


# -- S3 (moto on loopback) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_url, monkeypatch):
    import boto3

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"orion-backups-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    client.create_bucket(Bucket=bucket)
    return moto_url, bucket, client


def test_snapshots_go_to_s3_with_retention_and_restore_from_there(tmp_path, s3_env):
    url, bucket, client = s3_env
    cfg = config(tmp_path, keep=2, s3={"bucket": bucket, "prefix": "prod/orion", "endpoint_url": url})
    store = SQLiteStore(cfg.orion.store.resolved_path())
    fill(store, 7)
    names = [take_backup(cfg, now=1_800_000_000.0 + i)["name"] for i in range(3)]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted(f"prod/orion/{n}{s}" for n in names[1:] for s in (".db.gz", ".manifest.json"))
    store.close()
    shutil.rmtree(cfg.orion.backup.dir)  # only S3 has them now
    os.unlink(cfg.orion.store.resolved_path())
    got = restore(names[-1], cfg, source=f"s3://{bucket}/prod/orion", confirm=lambda _q: True)
    assert got["workloads"] == 7
    db = sqlite3.connect(cfg.orion.store.resolved_path())
    assert db.execute("SELECT COUNT(*) FROM workloads").fetchone()[0] == 7


def test_backup_to_an_explicit_s3_url(tmp_path, s3_env):
    url, bucket, client = s3_env
    cfg = config(tmp_path, s3={"bucket": bucket, "endpoint_url": url})
    store = SQLiteStore(cfg.orion.store.resolved_path())
    fill(store, 1)
    got = take_backup(cfg, to=f"s3://{bucket}/adhoc")
    assert got["targets"] == [f"s3://{bucket}/adhoc"]
    assert [i["name"] for i in list_backups(cfg, at=f"s3://{bucket}/adhoc")["items"]] == [got["name"]]
    store.close()


# -- the Litestream replica ------------------------------------------------------------------------
def _litestream_or_skip() -> None:
    from orion_ray.backup.replica import litestream_bin

    try:
        litestream_bin()
    except RuntimeError as exc:
        if os.environ.get("ORION_REQUIRE_LITESTREAM") == "1":  # CI installs it: missing is a failure
            raise
        pytest.skip(str(exc))


def test_the_replica_config_names_the_store_and_the_url(tmp_path):
    from orion_ray.backup.replica import litestream_config

    cfg = config(
        tmp_path,
        replica={
            "enabled": True,
            "url": "s3://b/p",
            "sync_interval": "1s",
            "endpoint_url": "http://127.0.0.1:9",
        },
    )
    got = litestream_config(cfg.orion.backup.replica, cfg.orion.store.resolved_path())
    target = got["dbs"][0]["replicas"][0]
    assert got["dbs"][0]["path"] == cfg.orion.store.resolved_path()
    assert target == {
        "url": "s3://b/p",
        "sync-interval": "1000ms",
        "endpoint": "http://127.0.0.1:9",
        "force-path-style": True,
    }


def test_the_replica_streams_and_restores(tmp_path, monkeypatch):
    """Litestream replicates the live store to a directory; a restore from it has every
    acknowledged submission, and is refused while the replica (which holds the store) runs."""
    _litestream_or_skip()
    from orion_ray.backup import replica

    monkeypatch.setenv("ORION_HOME", str(tmp_path / "home"))
    cfg = config(
        tmp_path, replica={"enabled": True, "url": f"file://{tmp_path}/replica", "sync_interval": "200ms"}
    )
    store = SQLiteStore(cfg.orion.store.resolved_path())
    fill(store, 3)
    pid = replica.start(cfg)
    try:
        ids = fill(store, 4, start=10)
        deadline = time.monotonic() + 30
        while not os.path.isdir(f"{tmp_path}/replica/ltx") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a few sync intervals
        with pytest.raises(RestoreRefused, match="in use|running"):
            replica.restore_from_replica(cfg, confirm=lambda _q: True)
    finally:
        replica.stop(pid)
    store.close()
    for side in ("", "-wal", "-shm"):
        p = cfg.orion.store.resolved_path() + side
        if os.path.exists(p):
            os.unlink(p)
    got = replica.restore_from_replica(cfg, confirm=lambda _q: True)
    assert got["verified"] and got["previous"] is None
    back = SQLiteStore(cfg.orion.store.resolved_path())
    assert set(ids) <= {w.workload_id for w in back.active()} and len(back.active()) == 7
    back.close()


def test_a_replica_restore_with_nothing_replicated_is_refused(tmp_path, monkeypatch):
    _litestream_or_skip()
    from orion_ray.backup import replica

    monkeypatch.setenv("ORION_HOME", str(tmp_path / "home"))
    cfg = config(tmp_path, replica={"enabled": True, "url": f"file://{tmp_path}/empty"})
    with pytest.raises(SnapshotRejected, match="could not restore"):
        replica.restore_from_replica(cfg, confirm=lambda _q: True)
