"""The original design's alert table as Prometheus alerting rules over Orion's metric names.

| original | rule | severity |
|---|---|---|
| error rate > 5 % for 5 min | ``OrionApiErrorRateCritical`` | critical |
| p95 latency > 1 s for 10 min | ``OrionApiLatencyP95High`` | high |
| worker down | ``OrionWorkerDown`` | medium |
| queue backlog > 1,000 | ``OrionQueueBacklogHigh`` | medium |
| cost anomaly (> 1.5 x baseline for 1 h) | ``OrionCostAnomaly`` | low |

Every rule carries ``severity`` (what Alertmanager routes on) and ``family`` (what its inhibit
rules compare: a critical alert silences the lower ones of the same family). ``render_rules``
writes the shipped file; the live test renders the same rules with only ``for:`` shortened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import yaml

SEVERITIES = ("critical", "high", "medium", "low")
# The shipped rules of cluster_configs/monitoring/alerts.yml use Prometheus' usual names; the
# routing maps them onto the original's scale (docs/alerting.md).
LEGACY_SEVERITIES = {"warning": "medium", "info": "low"}
GROUP = "orion-original-alerts"
# Streaming and model-bound routes are slow by design: inference answers take as long as the
# model, a followed log or an event stream stays open. The latency rule is about the API itself.
SLOW_BY_DESIGN = "/v1/completions|/v1/chat/completions|.*/logs.*|.*/events|/api/v1/stream"


@dataclass(frozen=True)
class AlertRule:
    """One alert of the table: its PromQL, how long it must hold, and how it is routed."""

    name: str
    expr: str
    for_: str
    severity: str
    family: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)


RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="OrionApiErrorRateCritical",
        expr=(
            'sum(rate(orion_api_request_seconds_count{status=~"5.."}[5m]))\n'
            "/ sum(rate(orion_api_request_seconds_count[5m])) > 0.05"
        ),
        for_="5m",
        severity="critical",
        family="api",
        summary="More than 5% of Orion API requests fail with a 5xx",
        description=(
            "{{ $value | humanizePercentage }} of API requests answered 5xx over the last 5 "
            "minutes, for 5 minutes. 503s mean the scheduler or the store is unreachable; other "
            "5xx are bugs."
        ),
    ),
    AlertRule(
        name="OrionApiLatencyP95High",
        expr=(
            "histogram_quantile(0.95,\n"
            f'  sum by (le) (rate(orion_api_request_seconds_bucket{{route!~"{SLOW_BY_DESIGN}"}}[5m])))'
            " > 1"
        ),
        for_="10m",
        severity="high",
        family="api",
        summary="Orion's API p95 latency is over 1 second",
        description=(
            "95% of API requests (inference, log follows and event streams left out) took up to "
            "{{ $value | humanizeDuration }} over the last 5 minutes, for 10 minutes."
        ),
    ),
    AlertRule(
        name="OrionWorkerDown",
        expr='max(orion_nodes{status="lost"}) > 0',
        for_="1m",
        severity="medium",
        family="workers",
        summary="A worker node stopped heartbeating",
        description=(
            "{{ $value }} node(s) are lost: they stopped heartbeating, and their workloads were "
            "requeued by policy. See `orion nodes`."
        ),
    ),
    AlertRule(
        name="OrionQueueBacklogHigh",
        expr="sum(orion_queue_depth) > 1000",
        for_="5m",
        severity="medium",
        family="queue",
        summary="More than 1,000 workloads are queued",
        description=(
            "{{ $value }} workloads are waiting: the cluster lacks capacity, the autoscaler is "
            "at its bounds, or tenants are over quota. See `orion queue`."
        ),
    ),
    AlertRule(
        name="OrionCostAnomaly",
        expr="max by (tenant) (orion_cost_ratio_to_baseline) > 1.5",
        for_="1h",
        severity="low",
        family="cost",
        summary="Tenant {{ $labels.tenant }} spends over 1.5x its baseline",
        description=(
            "Today's cost of tenant {{ $labels.tenant }} is {{ $value | humanize }}x its trailing "
            "7-day median, for an hour (the gauge comes with Orion's cost module)."
        ),
    ),
)


def rule_group(
    rules: tuple[AlertRule, ...] = RULES,
    *,
    for_override: Optional[Callable[[str], str]] = None,
    interval: Optional[str] = None,
) -> dict[str, Any]:
    """The rules as one Prometheus rule group (a dict). ``for_override`` maps each ``for:`` to
    another duration (the live test's short variant); ``interval`` sets the group's evaluation
    interval (default: Prometheus' global one). Nothing else changes."""
    out = []
    for r in rules:
        if r.severity not in SEVERITIES:
            raise ValueError(f"{r.name}: severity {r.severity!r} is not one of {SEVERITIES}")
        out.append(
            {
                "alert": r.name,
                "expr": r.expr,
                "for": for_override(r.for_) if for_override else r.for_,
                "labels": {"severity": r.severity, "family": r.family, **r.labels},
                "annotations": {"summary": r.summary, "description": r.description},
            }
        )
    group: dict[str, Any] = {"name": GROUP}
    if interval:
        group["interval"] = interval
    group["rules"] = out
    return {"groups": [group]}


HEADER = """\
# Prometheus alerting rules: the original design's alert table (docs/alerting.md).
# Generated by `orion alerts rules` from orion_ray/alerting/rules.py; do not edit by hand
# (tests/unit/test_alerting_rules.py checks this file equals the generated one).
# Load it beside alerts.yml with `rule_files:`; route the alerts with alertmanager.yml.
"""


class _Literal(str):
    """A string YAML writes as a block (multi-line PromQL stays readable)."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # yaml has no stubs here
    pass


_Dumper.add_representer(_Literal, _literal)


def to_yaml(doc: dict[str, Any], header: str = "") -> str:
    """``doc`` as YAML, multi-line strings as blocks, keys in the order given."""

    def mark(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: mark(v) for k, v in x.items()}
        if isinstance(x, list):
            return [mark(v) for v in x]
        return _Literal(x) if isinstance(x, str) and "\n" in x else x

    text: str = yaml.dump(mark(doc), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + text


def render_rules(
    *, for_override: Optional[Callable[[str], str]] = None, interval: Optional[str] = None
) -> str:
    """The rules file's text (the shipped one with no arguments)."""
    return to_yaml(rule_group(for_override=for_override, interval=interval), HEADER)
