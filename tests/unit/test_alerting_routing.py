"""Alertmanager routing (orion_ray/alerting/alertmanager.py): the configuration passes ``amtool
check-config``, each severity reaches its receiver (``amtool config routes test``), secrets are
files and never inline, and ``orion alerts`` renders what is shipped."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from orion_ray.alerting.alertmanager import (
    SECRET_ENV,
    alertmanager_config,
    example_settings,
    render_alertmanager,
    write_secret_files,
)
from orion_ray.alerting.cli import load_settings
from orion_ray.cli import main
from orion_ray.errors import ConfigError
from tests.alerting_tools import require_tool

MONITORING = Path(__file__).resolve().parents[2] / "cluster_configs" / "monitoring"
AM = MONITORING / "alertmanager.yml"


def _amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("amtool"), *args], capture_output=True, text=True, timeout=60)


def test_shipped_config_passes_amtool_check_config():
    done = _amtool("check-config", str(AM))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout and "4 receivers" in done.stdout


@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["severity=critical", "family=api"], "pagerduty-and-slack"),
        (["severity=high", "family=api"], "slack"),
        (["severity=medium"], "email"),
        (["severity=warning"], "email"),  # alerts.yml's scale
        (["severity=low"], "webhook"),
        (["severity=info"], "webhook"),
        (["alertname=Mystery"], "email"),  # no severity: a rule's mistake, someone reads the mail
    ],
)
def test_each_severity_reaches_its_receiver(labels, receiver):
    done = _amtool("config", "routes", "test", f"--config.file={AM}", *labels)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == receiver


def test_shipped_files_are_the_rendered_example():
    assert AM.read_text() == render_alertmanager(example_settings())
    assert load_settings(str(MONITORING / "alerting.example.yaml")) == example_settings()


def test_no_secret_is_inline():
    text = AM.read_text()
    cfg = yaml.safe_load(text)
    for r in cfg["receivers"]:
        for pd in r.get("pagerduty_configs", []):
            assert "routing_key" not in pd and pd["routing_key_file"]
        for sl in r.get("slack_configs", []):
            assert "api_url" not in sl and sl["api_url_file"]
        for em in r.get("email_configs", []):
            assert "auth_password" not in em and em["auth_password_file"]
        for wh in r.get("webhook_configs", []):
            assert wh["http_config"]["authorization"]["credentials_file"]


def test_an_inline_secret_in_the_settings_is_refused(tmp_path):
    raw = example_settings().model_dump(by_alias=True, exclude_none=True)
    raw["pagerduty"]["routing_key"] = "R0UT1NGKEY"
    raw["email"]["auth_password"] = "hunter2"
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_settings(str(path))
    fields = {d["field"] for d in err.value.details}
    assert {"pagerduty.routing_key", "email.auth_password"} <= fields
    assert "R0UT1NGKEY" not in str(err.value.details) and "hunter2" not in str(err.value.details)


def test_critical_inhibits_the_lower_alerts_of_its_family_only():
    rules = alertmanager_config(example_settings())["inhibit_rules"]
    crit = next(r for r in rules if 'severity="critical"' in r["source_matchers"])
    assert crit["equal"] == ["family"]
    # a source without a family would inhibit every target without one (equal on empty labels)
    assert 'family=~".+"' in crit["source_matchers"]
    assert crit["target_matchers"] == ['severity=~"high|medium|warning|low|info"']


def test_write_secret_files_from_the_environment(tmp_path):
    env = {"ORION_PAGERDUTY_ROUTING_KEY": "pd-key\n", "ORION_SMTP_PASSWORD": "pw", "UNRELATED": "x"}
    written = write_secret_files(str(tmp_path / "secrets"), env)
    assert set(written) == {"ORION_PAGERDUTY_ROUTING_KEY", "ORION_SMTP_PASSWORD"}
    key = Path(written["ORION_PAGERDUTY_ROUTING_KEY"])
    assert key.read_text() == "pd-key" and key.name == SECRET_ENV["ORION_PAGERDUTY_ROUTING_KEY"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_cli_renders_rules_and_config(tmp_path, capsys):
    out = tmp_path / "am.yml"
    assert (
        main(["alerts", "render", "--config", str(MONITORING / "alerting.example.yaml"), "--out", str(out)])
        == 0
    )
    assert out.read_text() == AM.read_text()
    assert main(["alerts", "rules"]) == 0
    assert capsys.readouterr().out == (MONITORING / "alerts-original.yml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("slack: {channel: x}\n")
    assert main(["alerts", "render", "--config", str(bad)]) == 2
    assert "pagerduty" in capsys.readouterr().err


def test_cli_secrets_writes_files_and_names_the_missing(tmp_path, monkeypatch, capsys):
    for var in SECRET_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ORION_SLACK_WEBHOOK_URL", "https://hooks.slack.invalid/T/B/X")
    assert main(["alerts", "secrets", "--dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "hooks.slack.invalid" not in captured.out + captured.err  # the value is never printed
    assert "ORION_PAGERDUTY_ROUTING_KEY" in captured.err
    assert (tmp_path / "slack_webhook_url").read_text() == "https://hooks.slack.invalid/T/B/X"
