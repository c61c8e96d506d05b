"""The original design's configuration blocks, read into Orion's own settings.

See docs/configuration-original.md.

The original's file has top-level ``control_plane``, ``queue``, ``monitoring``, ``autoscaling`` and
``cost_tracking`` blocks beside Orion's ``orion:`` section. ``translate_original`` moves each key
onto the Orion setting that does what it means, before the file is validated, so an original
file loads as it is written and every key acts. A value Orion cannot honour is refused with the
reason (``ConfigError`` naming the field), never ignored. A key also set on Orion's side must agree.

Pure: a mapping in, a mapping out; ``config.load_config`` calls it.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Mapping, Optional

from .errors import ConfigError
from .schedules import parse_duration

ORIGINAL_BLOCKS = ("control_plane", "queue", "monitoring", "autoscaling", "cost_tracking")
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
STORE_BACKENDS = {
    "orion": None,
    "store": None,
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# traces_backend → orion.tracing: Jaeger and Tempo take OTLP themselves
TRACES: dict[str, dict[str, Any]] = {
    "jaeger": {"enabled": True, "exporter": "otlp"},
    "tempo": {"enabled": True, "exporter": "otlp"},
    "otlp": {"enabled": True, "exporter": "otlp"},
    "console": {"enabled": True, "exporter": "console"},
    "none": {"enabled": False},
}
# the original's autoscaling keys Orion's autoscaler reads as they are (worker_pools.params_from_config)
SCALING_KEYS = (
    "target_cpu_utilization",
    "target_queue_depth",
    "scale_up_cooldown",
    "scale_down_cooldown",
    "predictive_scaling",
    "idle_time",
    "predictive_lead",
    "interval_s",
)
GRANULARITIES = ("hourly", "daily")
COST_METRICS = ("gpu_hours", "cpu_hours", "memory_gb_hours", "tokens", "cost", "spot_share")

Applied = list[dict[str, Any]]


class _Problems:
    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self.details.append({"field": field, "problem": problem})


def _section(root: dict[str, Any], *path: str) -> dict[str, Any]:
    """``root[path[0]][path[1]]…``, created as empty mappings where missing."""
    node = root
    for key in path:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            node[key] = nxt
        node = nxt
    return node


def _put(
    root: dict[str, Any], target: str, value: Any, source: str, problems: _Problems, applied: Applied
) -> None:
    """Set ``orion.<target>`` to ``value`` unless Orion's side already says something else."""
    *path, key = target.split(".")
    node = _section(root, "orion", *path)
    if key in node and node[key] != value:
        problems.add(
            source, f"{value!r} disagrees with orion.{target}: {node[key]!r} in the same file; keep one"
        )
        return
    node[key] = value
    applied.append({"field": source, "setting": f"orion.{target}", "value": value})


def _int(value: Any, field: str, problems: _Problems, lo: int = 1, hi: Optional[int] = None) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        problems.add(field, f"{value!r} is not an integer in [{lo}, {hi if hi is not None else '∞'}]")
        return None
    return value


def _control_plane(
    block: Mapping[str, Any], raw: dict[str, Any], problems: _Problems, applied: Applied
) -> None:
    if "replicas" in block:
        # the API replicas serve every request and read the store themselves; the scheduler stays
        # one actor (one writer over the store, restarted by Ray), so replicas never race admission
        n = _int(block["replicas"], "control_plane.replicas", problems, 1, 16)
        if n is not None:
            _put(raw, "api.replicas", n, "control_plane.replicas", problems, applied)
    if "region" in block:
        region = block["region"]
        if not isinstance(region, str) or not AWS_REGION.match(region):
            problems.add(
                "control_plane.region",
                f"{region!r} is not an AWS region code (e.g. us-east-1): Orion reads it as the region "
                "its capacity is launched in (orion.capacity.region)",
            )
            return
        _put(raw, "capacity.region", region, "control_plane.region", problems, applied)
        join = raw.get("orion", {}).get("region")
        if isinstance(join, dict):  # joining a control plane: the region's name there too
            _put(raw, "region.name", region, "control_plane.region", problems, applied)


def _queue(block: Mapping[str, Any], raw: dict[str, Any], problems: _Problems, applied: Applied) -> None:
    if "backend" in block:
        backend = str(block["backend"]).lower()
        if backend not in STORE_BACKENDS:
            problems.add(
                "queue.backend",
                f"Orion's queue is its store (sqlite or postgres); {block['backend']} is not supported: "
                "a submission is one store transaction, which is what makes request_id idempotent and "
                "loses nothing accepted",
            )
        elif STORE_BACKENDS[backend] == "postgres":
            _put(raw, "store.backend", "postgres", "queue.backend", problems, applied)
        elif STORE_BACKENDS[backend] == "sqlite":
            store_backend = raw.get("orion", {}).get("store", {}).get("backend", "sqlite")
            if store_backend != "sqlite":
                problems.add("queue.backend", f"sqlite disagrees with orion.store.backend: {store_backend!r}")
            else:
                applied.append(
                    {"field": "queue.backend", "setting": "orion.store (sqlite)", "value": "sqlite"}
                )
        else:
            applied.append({"field": "queue.backend", "setting": "orion.store", "value": backend})
    if "max_queue_size" in block:
        n = _int(block["max_queue_size"], "queue.max_queue_size", problems, 1)
        if n is not None:  # unfinished workloads; beyond it a submission is answered 429
            _put(raw, "scheduler.max_queue_size", n, "queue.max_queue_size", problems, applied)
    if "message_retention" in block:
        try:
            seconds = parse_duration("queue.message_retention", block["message_retention"])
        except ValueError as exc:
            problems.add("queue.message_retention", str(exc).split(": ", 1)[-1] + " (e.g. 7d, 168h)")
        else:  # a message is a workload: ended workloads are kept this long
            days = round(seconds / 86400, 6)
            _put(raw, "store.retention.workloads_days", days, "queue.message_retention", problems, applied)


def _monitoring(block: Mapping[str, Any], raw: dict[str, Any], problems: _Problems, applied: Applied) -> None:
    if "metrics_backend" in block:
        backend = str(block["metrics_backend"]).lower()
        if backend == "prometheus":
            applied.append(
                {"field": "monitoring.metrics_backend", "setting": "GET /metrics", "value": "prometheus"}
            )
        else:
            problems.add(
                "monitoring.metrics_backend",
                f"Orion serves Prometheus text at /metrics (and through Ray's metrics); "
                f"{block['metrics_backend']} is not supported: point its Prometheus-compatible agent "
                "at /metrics and say prometheus",
            )
    if "traces_backend" in block:
        backend = str(block["traces_backend"]).lower()
        if backend not in TRACES:
            problems.add(
                "monitoring.traces_backend",
                f"Orion exports OpenTelemetry (OTLP); {block['traces_backend']} is not supported: "
                f"use one of {', '.join(TRACES)} (or an OpenTelemetry collector in front of it)",
            )
        else:
            for key, value in TRACES[backend].items():
                _put(raw, f"tracing.{key}", value, "monitoring.traces_backend", problems, applied)
    if "log_level" in block:
        level = str(block["log_level"]).upper()
        if level not in LOG_LEVELS:
            problems.add(
                "monitoring.log_level", f"{block['log_level']!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        else:
            _put(raw, "logging.level", level, "monitoring.log_level", problems, applied)


def _percent(value: Any) -> Any:
    # the original writes a fraction (0.7); Orion's setting is a percentage (70)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
        return round(value * 100, 6)
    return value


def _autoscaling(
    block: Mapping[str, Any], raw: dict[str, Any], problems: _Problems, applied: Applied
) -> None:
    for key, value in block.items():
        if key in SCALING_KEYS:
            _put(raw, f"autoscaling.{key}", value, f"autoscaling.{key}", problems, applied)
        elif key == "target_utilization":
            _put(
                raw,
                "autoscaling.target_cpu_utilization",
                _percent(value),
                f"autoscaling.{key}",
                problems,
                applied,
            )
        elif key == "target_gpu_utilization":
            problems.add(
                "autoscaling.target_gpu_utilization",
                "Orion grows GPU pools for the gangs that wait, not for headroom on busy GPUs (a fully "
                "allocated GPU is the goal); use target_queue_depth or target_utilization (CPU)",
            )
        elif key not in ("min_instances", "max_instances"):
            problems.add(
                f"autoscaling.{key}",
                "unknown key; known: min_instances, max_instances, target_utilization, "
                + ", ".join(SCALING_KEYS),
            )
    lo = (
        _int(block["min_instances"], "autoscaling.min_instances", problems, 0)
        if "min_instances" in block
        else None
    )
    hi = (
        _int(block["max_instances"], "autoscaling.max_instances", problems, 0)
        if "max_instances" in block
        else None
    )
    if lo is None and hi is None:
        return
    if lo is not None and hi is not None and lo > hi:
        problems.add("autoscaling.min_instances", f"{lo} is above max_instances {hi}")
        return
    pools = raw.get("orion", {}).get("worker_pools") or []
    if not pools:
        field = "autoscaling.min_instances" if lo is not None else "autoscaling.max_instances"
        problems.add(field, "bounds Orion's worker pools (orion.worker_pools) and none is configured")
        return
    # the bounds of every pool that does not set its own (a pool's own min_size/max_size wins)
    for i, pool in enumerate(pools):
        if not isinstance(pool, dict):
            continue
        for key, value, source in (("min_size", lo, "min_instances"), ("max_size", hi, "max_instances")):
            if value is not None and key not in pool:
                pool[key] = value
                applied.append(
                    {
                        "field": f"autoscaling.{source}",
                        "setting": f"orion.worker_pools.{i}.{key}",
                        "value": value,
                    }
                )


def _cost(block: Mapping[str, Any], raw: dict[str, Any], problems: _Problems, applied: Applied) -> None:
    checks: dict[str, Callable[[Any], Optional[str]]] = {
        "enabled": lambda v: None if isinstance(v, bool) else "is not a boolean",
        "granularity": lambda v: (
            None
            if v in GRANULARITIES
            else f"{v!r}: usage is reported per hour or per day ({', '.join(GRANULARITIES)})"
        ),
        "metrics": lambda v: (
            None
            if isinstance(v, list) and all(m in COST_METRICS for m in v)
            else f"{v!r}: a list of {', '.join(COST_METRICS)}"
        ),
        "billing_period": lambda v: (
            None
            if v == "monthly"
            else f"{v!r}: Orion's chargeback export is monthly (orion cost export --month)"
        ),
        "export_to": lambda v: (
            None
            if isinstance(v, str) and (v.startswith(("s3://", "file://", "/")))
            else f"{v!r}: an s3://bucket/prefix, a file:// URL or an absolute path"
        ),
    }
    for key, value in block.items():
        check = checks.get(key)
        if check is None:
            problems.add(f"cost_tracking.{key}", f"unknown key; known: {', '.join(checks)}")
            continue
        problem = check(value)
        if problem:
            problems.add(f"cost_tracking.{key}", problem)
        else:  # carried as they are into Orion's cost section (docs/cost.md reads them)
            _put(raw, f"cost.{key}", value, f"cost_tracking.{key}", problems, applied)


_BLOCKS = {
    "control_plane": _control_plane,
    "queue": _queue,
    "monitoring": _monitoring,
    "autoscaling": _autoscaling,
    "cost_tracking": _cost,
}
_KNOWN = {
    "control_plane": ("replicas", "region"),
    "queue": ("backend", "max_queue_size", "message_retention"),
    "monitoring": ("metrics_backend", "traces_backend", "log_level"),
}


def has_original_blocks(raw: Any) -> bool:
    """Whether a loaded YAML document uses any of the original's top-level blocks."""
    return isinstance(raw, Mapping) and any(k in raw for k in ORIGINAL_BLOCKS)


def translate_original(raw: Mapping[str, Any]) -> tuple[dict[str, Any], Applied]:
    """``raw`` with the original's blocks moved onto Orion's settings, and what each key became
    (``[{field, setting, value}]``). ``ConfigError`` lists every key that cannot be honoured.
    ``raw`` is not changed."""
    out = copy.deepcopy(dict(raw))
    problems = _Problems()
    applied: Applied = []
    if out.get("orion") is None:
        out["orion"] = {}
    if not isinstance(out["orion"], dict):
        return out, applied  # the model reports it
    for name in ORIGINAL_BLOCKS:
        if name not in out:
            continue
        block = out.pop(name)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            problems.add(name, f"{block!r} is not a mapping")
            continue
        for key in block:
            if name in _KNOWN and key not in _KNOWN[name]:
                problems.add(f"{name}.{key}", f"unknown key; known: {', '.join(_KNOWN[name])}")
        _BLOCKS[name](block, out, problems, applied)
    if problems.details:
        raise ConfigError("the original's configuration has values Orion cannot honour", problems.details)
    return out, applied
