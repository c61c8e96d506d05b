"""``orion backup`` / ``backups`` / ``restore`` through the CLI's ``main`` (no Ray)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from orion_ray.cli import main
from orion_ray.store import SQLiteStore

from .backup_support import fill


@pytest.fixture
def setup(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ORION_HOME", str(home))
    cfg = tmp_path / "orion.yaml"
    cfg.write_text(
        yaml.safe_dump({"orion": {"store": {"path": str(home / "orion.db")}, "backup": {"keep": 3}}})
    )
    store = SQLiteStore(str(home / "orion.db"))
    fill(store, 4)
    store.close()
    return home, str(cfg)


def test_backup_then_list_then_restore(setup, capsys):
    home, cfg = setup
    assert main(["backup", "--config", cfg, "-o", "json"]) == 0
    name = json.loads(capsys.readouterr().out)["name"]
    assert (home / "backups" / f"{name}.db.gz").exists()  # the default directory
    assert main(["backups", "--config", cfg]) == 0
    assert name in capsys.readouterr().out
    assert main(["restore", name, "--yes", "--config", cfg]) == 0
    assert "orion up" in capsys.readouterr().out


def test_restore_is_refused_while_orion_runs(setup, capsys):
    home, cfg = setup
    assert main(["backup", "--config", cfg, "-o", "json"]) == 0
    name = json.loads(capsys.readouterr().out)["name"]
    (home / "cluster.json").write_text(json.dumps({"started": True, "pid": os.getpid()}))
    assert main(["restore", name, "--yes", "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert "orion down" in err and f"pid {os.getpid()}" in err


def test_restore_without_yes_and_without_a_terminal_is_refused(setup, capsys, monkeypatch):
    _, cfg = setup
    assert main(["backup", "--config", cfg, "-o", "json"]) == 0
    name = json.loads(capsys.readouterr().out)["name"]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    assert main(["restore", name, "--config", cfg]) == 2
    assert "--yes" in capsys.readouterr().err


def test_restore_of_an_unknown_snapshot_says_so(setup, capsys):
    _, cfg = setup
    assert main(["restore", "orion-20990101T000000000Z-abcd", "--yes", "--config", cfg]) == 1
    assert "no snapshot" in capsys.readouterr().err
