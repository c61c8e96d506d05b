"""The original's alert table (orion_ray/alerting/rules.py): each rule fires on input series that
should fire it and stays quiet on ones that should not, at its real ``for:`` duration, checked with
``promtool test rules`` (Prometheus simulates the time); the shipped rule files pass
``promtool check rules`` and are the generated ones."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orion_ray.alerting.rules import RULES, SEVERITIES, render_rules, rule_group
from tests.alerting_tools import require_tool
from tests.unit.test_metrics import check_expr

MONITORING = Path(__file__).resolve().parents[2] / "cluster_configs" / "monitoring"
# the gauge comes with the cost module (orion_cost_ratio_to_baseline); every other series is Orion's today
COST_GAUGE = "orion_cost_ratio_to_baseline"


def _api(status: str, values: str, route: str = "/api/v1/workloads") -> dict:
    return {
        "series": f'orion_api_request_seconds_count{{route="{route}",method="POST",status="{status}"}}',
        "values": values,
    }


def _latency(le_values: dict[str, str], route: str = "/api/v1/workloads") -> list[dict]:
    return [
        {
            "series": "orion_api_request_seconds_bucket"
            f'{{route="{route}",method="GET",status="200",le="{le}"}}',
            "values": v,
        }
        for le, v in le_values.items()
    ]


def _fires(name: str, at: str, labels: dict[str, str], value: str) -> dict:
    """``name`` firing at ``at`` with ``labels``; its annotations rendered with ``value`` (as the
    template formats it) and the labels, so the templates are checked too."""
    rule = next(r for r in RULES if r.name == name)

    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)

    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {"severity": rule.severity, "family": rule.family, **labels},
                "exp_annotations": {"summary": render(rule.summary), "description": render(rule.description)},
            }
        ],
    }


def _quiet(name: str, at: str) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


# Input series sampled every minute from t=0. A rate has two samples at 1m, so a rate-based
# condition holds from 1m and fires once it has held for the rule's `for:`.
CASES: list[dict[str, Any]] = [
    {  # 10 % of requests 5xx: pending through 5m, firing by 7m
        "interval": "1m",
        "input_series": [_api("500", "0+10x30"), _api("202", "0+90x30")],
        "alert_rule_test": [
            _quiet("OrionApiErrorRateCritical", "5m"),
            _fires("OrionApiErrorRateCritical", "7m", {}, "10%"),
        ],
    },
    {  # 4 % of requests 5xx for half an hour: never
        "interval": "1m",
        "input_series": [_api("503", "0+4x30"), _api("200", "0+96x30")],
        "alert_rule_test": [_quiet("OrionApiErrorRateCritical", "30m")],
    },
    {  # every request between 1 s and 2.5 s: p95 ~2.4 s, pending through 10m, firing by 12m
        "interval": "1m",
        "input_series": _latency({"0.5": "0x30", "1.0": "0x30", "2.5": "0+10x30", "+Inf": "0+10x30"}),
        "alert_rule_test": [
            _quiet("OrionApiLatencyP95High", "10m"),
            _fires("OrionApiLatencyP95High", "12m", {}, "2.425s"),
        ],
    },
    {  # fast API requests, and slow inference (left out by design): never
        "interval": "1m",
        "input_series": _latency({"0.5": "0+10x30", "1.0": "0+10x30", "2.5": "0+10x30", "+Inf": "0+10x30"})
        + _latency({"1.0": "0x30", "2.5": "0+50x30", "+Inf": "0+50x30"}, route="/v1/chat/completions"),
        "alert_rule_test": [_quiet("OrionApiLatencyP95High", "30m")],
    },
    {  # a node lost from 2m: firing after a minute of it; none lost: quiet
        "interval": "1m",
        "input_series": [
            {"series": 'orion_nodes{status="lost"}', "values": "0 0 1x10"},
            {"series": 'orion_nodes{status="ready"}', "values": "4x12"},
        ],
        "alert_rule_test": [_quiet("OrionWorkerDown", "2m"), _fires("OrionWorkerDown", "4m", {}, "1")],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": 'orion_nodes{status="lost"}', "values": "0x30"},
            {"series": 'orion_nodes{status="draining"}', "values": "2x30"},
        ],
        "alert_rule_test": [_quiet("OrionWorkerDown", "30m")],
    },
    {  # 1,100 queued over two tenants for 10m, then 10: pending through 4m, firing by 6m, resolved
        "interval": "1m",
        "input_series": [
            {"series": 'orion_queue_depth{tenant="a",priority="normal"}', "values": "600x10 5x10"},
            {"series": 'orion_queue_depth{tenant="b",priority="low"}', "values": "500x10 5x10"},
        ],
        "alert_rule_test": [
            _quiet("OrionQueueBacklogHigh", "4m"),
            _fires("OrionQueueBacklogHigh", "6m", {}, "1100"),
            _quiet("OrionQueueBacklogHigh", "15m"),
        ],
    },
    {  # exactly 1,000 queued is not a backlog over 1,000
        "interval": "1m",
        "input_series": [{"series": 'orion_queue_depth{tenant="a",priority="normal"}', "values": "1000x40"}],
        "alert_rule_test": [_quiet("OrionQueueBacklogHigh", "40m")],
    },
    {  # tenant a at 2x its baseline for 90m fires after an hour; b at 1.2x and c at 1.4x never
        "interval": "1m",
        "input_series": [
            {"series": f'{COST_GAUGE}{{tenant="a"}}', "values": "2x90"},
            {"series": f'{COST_GAUGE}{{tenant="b"}}', "values": "1.2x90"},
            {"series": f'{COST_GAUGE}{{tenant="c"}}', "values": "1.4x150"},
        ],
        "alert_rule_test": [
            _quiet("OrionCostAnomaly", "59m"),
            _fires("OrionCostAnomaly", "61m", {"tenant": "a"}, "2"),
            _quiet("OrionCostAnomaly", "140m"),
        ],
    },
]


def _promtool_test(tmp_path: Path, rules_text: str, cases: list[dict]) -> subprocess.CompletedProcess:
    promtool = require_tool("promtool")
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_text)
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": cases}))
    return subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)


def test_each_rule_fires_and_stays_quiet_at_its_real_duration(tmp_path):
    done = _promtool_test(tmp_path, render_rules(), CASES)
    assert done.returncode == 0, done.stdout + done.stderr
    # every rule of the table has a case that fires it
    fired = {t["alertname"] for c in CASES for t in c["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {r.name for r in RULES}


def test_promtool_test_catches_a_wrong_expectation(tmp_path):
    """The harness would notice a rule that fires too early."""
    wrong = [dict(CASES[0], alert_rule_test=[_fires("OrionApiErrorRateCritical", "4m", {}, "10%")])]
    done = _promtool_test(tmp_path, render_rules(), wrong)
    assert done.returncode != 0


@pytest.mark.parametrize("name", ["alerts.yml", "alerts-original.yml"])
def test_shipped_rule_files_pass_promtool_check(name):
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shipped_file_is_the_generated_one():
    assert (MONITORING / "alerts-original.yml").read_text() == render_rules()


def test_rules_name_only_exposed_metrics_and_route_on_the_original_scale():
    for r in RULES:
        assert r.severity in SEVERITIES and r.family
        if COST_GAUGE in r.expr:
            assert r.severity == "low" and r.for_ == "1h"
            continue
        check_expr(r.expr)
    table = {r.name: (r.severity, r.for_) for r in RULES}
    assert table["OrionApiErrorRateCritical"] == ("critical", "5m")
    assert table["OrionApiLatencyP95High"] == ("high", "10m")


def test_the_short_variant_changes_only_the_durations():
    long, short = rule_group(), rule_group(for_override=lambda d: "2s", interval="1s")
    assert short["groups"][0]["interval"] == "1s"
    for a, b in zip(long["groups"][0]["rules"], short["groups"][0]["rules"]):
        assert b["for"] == "2s"
        assert {k: v for k, v in a.items() if k != "for"} == {k: v for k, v in b.items() if k != "for"}


def test_an_unknown_severity_is_refused():
    from dataclasses import replace

    bad = (replace(RULES[0], severity="urgent"),)
    with pytest.raises(ValueError, match="urgent"):
        rule_group(bad)
