"""orion_ray.metrics: what each method puts in the exposition, isolation of instances, the Ray mirror
(against a fake ``ray.util.metrics`` as strict as the real one), the API middleware, and the shipped
alert rules and Grafana dashboard, which may only name metrics Orion exposes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import prometheus_client
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orion_ray import metrics as om
from orion_ray.metrics import OrionMetrics, merge_exposition, workload_counts
from orion_ray.models import Priority
from orion_ray.status import Status

MONITORING = Path(__file__).resolve().parents[2] / "cluster_configs" / "monitoring"
BUILTIN_SERIES = {"up"}  # series Prometheus makes itself


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition text: ``(name, labels) → value``."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(m: OrionMetrics, name: str, **labels: str) -> float | None:
    return samples(m.render()).get((name, frozenset(labels.items())))


def bucket_counts(m: OrionMetrics, name: str, **labels: str) -> dict[float, float]:
    out = {}
    for (n, lab), v in samples(m.render()).items():
        d = dict(lab)
        le = d.pop("le", None)
        if n == name + "_bucket" and d == labels:
            out[float(le)] = v
    return out


@pytest.fixture
def m() -> OrionMetrics:
    return OrionMetrics(ray_mirror=False)


# == each method ===================================================================================
def test_transition_counts_per_label_set(m):
    m.transition("acme", "high", "queued")
    m.transition("acme", "high", "queued")
    m.transition("acme", "high", "running")
    name = "orion_workload_transitions_total"
    assert value(m, name, tenant="acme", priority="high", status="queued") == 2
    assert value(m, name, tenant="acme", priority="high", status="running") == 1
    assert value(m, name, tenant="other", priority="high", status="queued") is None


def test_set_workloads_sets_counts_and_zeroes_label_sets_that_disappeared(m):
    m.set_workloads({("acme", "queued"): 3, ("acme", "running"): 1, ("b", "queued"): 2})
    assert value(m, "orion_workloads", tenant="acme", status="queued") == 3
    m.set_workloads({("acme", "running"): 4})
    assert value(m, "orion_workloads", tenant="acme", status="running") == 4
    assert value(m, "orion_workloads", tenant="acme", status="queued") == 0
    assert value(m, "orion_workloads", tenant="b", status="queued") == 0
    m.set_workloads({("b", "queued"): 5})
    assert value(m, "orion_workloads", tenant="b", status="queued") == 5
    assert value(m, "orion_workloads", tenant="acme", status="running") == 0


def test_set_queue_depth_per_tenant_and_priority(m):
    m.set_queue_depth({("acme", "high"): 7, ("acme", "low"): 1})
    m.set_queue_depth({("acme", "high"): 6})
    assert value(m, "orion_queue_depth", tenant="acme", priority="high") == 6
    assert value(m, "orion_queue_depth", tenant="acme", priority="low") == 0


def test_wait_and_run_time_histograms(m):
    m.wait_time("acme", 0.02)
    m.wait_time("acme", 5400.0)
    m.run_time("acme", "completed", 42.0)
    m.wait_time("acme", -1.0)  # clock skew: counted as 0, never a negative sum
    wait = bucket_counts(m, "orion_workload_wait_seconds", tenant="acme")
    assert wait[0.01] == 1 and wait[0.025] == 2 and wait[3600.0] == 2 and wait[7200.0] == 3
    assert min(wait) == 0.01 and max(k for k in wait if k != float("inf")) >= 3600 * 8
    assert value(m, "orion_workload_wait_seconds_count", tenant="acme") == 3
    assert value(m, "orion_workload_wait_seconds_sum", tenant="acme") == pytest.approx(5400.02)
    assert value(m, "orion_workload_run_seconds_count", tenant="acme", status="completed") == 1
    assert value(m, "orion_workload_run_seconds_sum", tenant="acme", status="completed") == 42.0


def test_cycle_records_phases_in_seconds_cycles_and_admissions(m):
    assert value(m, "orion_scheduler_cycles_total") == 0
    m.cycle({"snapshot": 0.2, "fit": 3.0, "reserve": 1500.0}, admitted=4)
    m.cycle({}, admitted=0)  # an empty cycle still counts (and refreshes the timestamp)
    assert value(m, "orion_scheduler_cycles_total") == 2
    assert value(m, "orion_scheduler_admitted_total") == 4
    assert value(m, "orion_scheduler_cycle_phase_seconds_sum", phase="reserve") == 1.5
    assert value(m, "orion_scheduler_cycle_phase_seconds_sum", phase="fit") == 0.003
    assert bucket_counts(m, "orion_scheduler_cycle_phase_seconds", phase="snapshot")[0.00025] == 1
    assert value(m, "orion_scheduler_cycle_phase_seconds_count", phase="order") is None
    assert value(m, "orion_scheduler_last_cycle_timestamp_seconds") > 1.6e9


def test_retry_preemption_placement_and_readiness_timeout(m):
    m.retry("acme")
    m.retry("acme")
    m.preemption("b")
    m.placement_ready(0.3)
    m.readiness_timeout()
    assert value(m, "orion_workload_retries_total", tenant="acme") == 2
    assert value(m, "orion_workload_preemptions_total", tenant="b") == 1
    assert value(m, "orion_placement_ready_seconds_count") == 1
    assert bucket_counts(m, "orion_placement_ready_seconds")[0.5] == 1
    assert value(m, "orion_placement_readiness_timeouts_total") == 1


def test_scheduler_up(m):
    assert value(m, "orion_scheduler_up") == 0
    m.scheduler_up(True)
    assert value(m, "orion_scheduler_up") == 1
    m.scheduler_up(False)
    assert value(m, "orion_scheduler_up") == 0


def test_api_request_labels_are_route_template_method_and_status(m):
    m.api_request("/api/v1/workloads/{workload_id}", "get", 404, 0.004)
    m.api_request("/api/v1/workloads/{workload_id}", "GET", 404, 0.006)
    labels = {"route": "/api/v1/workloads/{workload_id}", "method": "GET", "status": "404"}
    assert value(m, "orion_api_request_seconds_count", **labels) == 2
    assert bucket_counts(m, "orion_api_request_seconds", **labels)[0.005] == 1


def test_workload_counts_from_workload_objects():
    W = types.SimpleNamespace
    ws = [
        W(tenant_id="a", status=Status.QUEUED, priority=Priority.HIGH),
        W(tenant_id="a", status=Status.QUEUED, priority=Priority.HIGH),
        W(tenant_id="a", status=Status.RUNNING, priority=Priority.LOW),
        W(tenant_id="b", status="queued", priority="low"),
    ]
    by_status, queued = workload_counts(ws)
    assert by_status == {("a", "queued"): 2, ("a", "running"): 1, ("b", "queued"): 1}
    assert queued == {("a", "high"): 2, ("b", "low"): 1}


# == isolation and exposition ======================================================================
def test_two_instances_do_not_share_state_nor_touch_the_global_registry():
    a, b = OrionMetrics(ray_mirror=False), OrionMetrics(ray_mirror=False)
    a.retry("acme")
    a.scheduler_up(True)
    assert value(a, "orion_workload_retries_total", tenant="acme") == 1
    assert value(b, "orion_workload_retries_total", tenant="acme") is None
    assert value(b, "orion_scheduler_up") == 0
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "orion_" not in global_text


def test_merge_exposition_keeps_both_and_later_text_wins():
    api, sched = OrionMetrics(ray_mirror=False), OrionMetrics(ray_mirror=False)
    api.api_request("/health", "GET", 200, 0.01)
    sched.scheduler_up(True)
    sched.cycle({"fit": 1.0}, 3)
    merged = samples(merge_exposition(api.render(), sched.render()))
    assert (
        merged[
            (
                "orion_api_request_seconds_count",
                frozenset({"route": "/health", "method": "GET", "status": "200"}.items()),
            )
        ]
        == 1
    )
    assert merged[("orion_scheduler_up", frozenset())] == 1  # not the API's default 0
    assert merged[("orion_scheduler_admitted_total", frozenset())] == 3
    # without the scheduler's text the API's own defaults remain: the scheduler shows as down
    alone = samples(merge_exposition(api.render()))
    assert alone[("orion_scheduler_up", frozenset())] == 0


def test_import_does_not_import_ray():
    code = "import sys, orion_ray.metrics; sys.exit(1 if 'ray' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr or "importing orion_ray.metrics imported ray"


# == the Ray mirror, against a fake as strict as ray.util.metrics ==================================
class _FakeMetric:
    """Validates like ``ray.util.metrics``: every declared tag key, string values, inc > 0."""

    def __init__(self, kind, name, description="", boundaries=None, tag_keys=None):
        assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name), name
        assert isinstance(tag_keys, tuple)
        if kind == "histogram":
            assert boundaries and all(b > 0 for b in boundaries)
        self.kind, self.name, self.tag_keys, self.records = kind, name, tag_keys, []

    def _record(self, value, tags):
        tags = tags or {}
        if set(tags) != set(self.tag_keys):
            raise ValueError(f"{self.name}: tags {sorted(tags)} != {sorted(self.tag_keys)}")
        if not all(isinstance(v, str) for v in tags.values()):
            raise TypeError("tag values must be str")
        self.records.append((value, tags))

    def inc(self, value=1.0, tags=None):
        if value <= 0:
            raise ValueError("value must be >0")
        self._record(value, tags)

    def set(self, value, tags=None):
        self._record(value, tags)

    def observe(self, value, tags=None):
        self._record(value, tags)


@pytest.fixture
def fake_ray(monkeypatch):
    made: dict[str, _FakeMetric] = {}

    def factory(kind):
        def make(name, description="", boundaries=None, tag_keys=None):
            made[name] = _FakeMetric(kind, name, description, boundaries, tag_keys)
            return made[name]

        return make

    ray = types.ModuleType("ray")
    ray.initialized = True
    ray.is_initialized = lambda: ray.initialized
    util = types.ModuleType("ray.util")
    metrics = types.ModuleType("ray.util.metrics")
    metrics.Counter, metrics.Gauge = factory("counter"), factory("gauge")
    metrics.Histogram = factory("histogram")
    ray.util, util.metrics = util, metrics
    for name, mod in (("ray", ray), ("ray.util", util), ("ray.util.metrics", metrics)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(om._RayMirror, "_objects", {})
    ray.made = made
    return ray


def _every_method(m: OrionMetrics) -> None:
    m.transition("acme", "high", "running")
    m.set_workloads({("acme", "running"): 1})
    m.set_workloads({})
    m.set_queue_depth({("acme", "high"): 2})
    m.wait_time("acme", 1.0)
    m.run_time("acme", "completed", 2.0)
    m.cycle({"fit": 1.0}, 2)
    m.scheduler_up(True)
    m.retry("acme")
    m.preemption("acme")
    m.placement_ready(0.5)
    m.readiness_timeout()
    m.api_request("/health", "GET", 200, 0.01)
    m.set_fragmentation({"H100": {"free_gpus": 1.5, "stranded_gpus": 0.5}})
    m.placement_followed("gpu", True)
    m.set_nodes({"ready": 2, "lost": 1})
    m.set_pools([{"pool": "a100", "current": 2, "target": 4}])
    m.pipelines(
        runs={"running": 1},
        nodes={"pending": 2},
        queued=1,
        retries={"user": 1, "system": 2},
        durations=[("succeeded", 1.5)],
    )
    m.lease(True, 3, lost=True)
    m.set_cost({"acme": 1.2}, 0.75)
    for kind in ("hit", "miss", "eviction", "bytes"):
        m.serving_cache("chat", "v1", kind, 1)
    m.serving_tokens("acme", "chat", 12, 30)
    m.serving_limited("acme", "tokens_per_minute")


def test_ray_mirror_records_every_metric_with_all_tag_keys(fake_ray):
    m = OrionMetrics(ray_mirror=True)
    _every_method(m)
    made = fake_ray.made
    assert set(made) == {s.name for s in om.METRICS}  # same names; Ray adds its ray_ prefix
    assert made["orion_workloads"].records == [
        (1.0, {"tenant": "acme", "status": "running"}),
        (0.0, {"tenant": "acme", "status": "running"}),
    ]
    assert made["orion_scheduler_admitted"].records == [(2, {})]
    assert made["orion_api_request_seconds"].records == [
        (0.01, {"route": "/health", "method": "GET", "status": "200"})
    ]
    assert all(made[n].kind == s.kind for n, s in om.SPECS.items())
    # one Ray metric object per name and process, shared by every instance
    OrionMetrics(ray_mirror=True).retry("b")
    assert len(made["orion_workload_retries"].records) == 2


def test_ray_mirror_is_off_when_disabled_or_ray_not_initialized(fake_ray):
    _every_method(OrionMetrics(ray_mirror=False))
    assert fake_ray.made == {}
    fake_ray.initialized = False
    _every_method(OrionMetrics(ray_mirror=True))
    assert fake_ray.made == {}


def test_ray_mirror_failure_never_breaks_the_caller(fake_ray, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("metrics agent gone")

    monkeypatch.setattr(sys.modules["ray.util.metrics"], "Counter", broken)
    m = OrionMetrics(ray_mirror=True)
    m.retry("acme")  # does not raise, and the Prometheus side still counts
    assert value(m, "orion_workload_retries_total", tenant="acme") == 1


# == the API middleware ============================================================================
def test_api_middleware_labels_route_templates_and_counts_errors(m):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/api/v1/workloads/{workload_id}")
    async def get_one(workload_id: str):
        if workload_id == "boom":
            raise RuntimeError("boom")
        return {"id": workload_id}

    app.add_middleware(om.ApiMetricsMiddleware, metrics=m)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/workloads/wl-1").status_code == 200
        assert client.get("/api/v1/workloads/wl-2").status_code == 200
        assert client.get("/api/v1/workloads/boom").status_code == 500
        assert client.get("/nowhere/wl-3").status_code == 404
    route = "/api/v1/workloads/{workload_id}"
    count = "orion_api_request_seconds_count"
    assert value(m, count, route=route, method="GET", status="200") == 2
    assert value(m, count, route=route, method="GET", status="500") == 1
    assert value(m, count, route=om.UNMATCHED_ROUTE, method="GET", status="404") == 1
    assert "wl-1" not in m.render()


# == shipped alert rules and dashboard =============================================================
def _exposed() -> tuple[set[str], dict[str, set[str]]]:
    """Series names ``OrionMetrics().render()`` exposes, and each one's labels once recorded."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    for fam in text_string_to_metric_families(OrionMetrics(ray_mirror=False).render()):
        names |= {fam.name + s for s in suffixes.get(fam.type, ("",))}
        names |= {s.name for s in fam.samples}
    full = OrionMetrics(ray_mirror=False)
    _every_method(full)
    labels: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(full.render()):
        for s in fam.samples:
            labels.setdefault(s.name, set()).update(s.labels)
    return names, labels


EXPOSED, LABELS = _exposed()


def check_expr(expr: str) -> set[str]:
    """Fail unless every ``orion_`` series in ``expr`` is exposed, with the labels it matches on
    and groups by; return the series named."""
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    names = set(re.findall(r"\b(orion_[A-Za-z0-9_:]+)", expr))
    assert names or any(re.search(rf"\b{b}\b", expr) for b in BUILTIN_SERIES), expr
    unknown = names - EXPOSED
    assert not unknown, f"{expr!r} names metrics Orion does not expose: {sorted(unknown)}"
    for name, matchers in re.findall(r"\b(orion_[A-Za-z0-9_:]+)\{([^}]*)\}", expr):
        used = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
        assert used <= LABELS.get(name, set()), f"{expr!r}: {name} has no label {used}"
    known = set().union(*(LABELS.get(n, set()) for n in names), {"le"})
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        by = {g.strip() for g in group.split(",") if g.strip()}
        assert by <= known, f"{expr!r} groups by labels its metrics lack: {sorted(by - known)}"
    return names


def test_check_expr_catches_unknown_metrics_and_labels():
    check_expr('sum by (tenant) (rate(orion_workload_retries_total{tenant="a"}[5m]))')
    for bad in (
        "rate(orion_workload_retries[5m])",
        "orion_queue_depth{queue=\"x\"}",
        "sum by (route) (orion_queue_depth)",
        "orion_workloads_bucket",
    ):
        with pytest.raises(AssertionError):
            check_expr(bad)


def test_alert_rules_are_valid_prometheus_rules_naming_exposed_metrics():
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    assert set(doc) == {"groups"} and doc["groups"]
    alerts, named = [], set()
    for group in doc["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert re.fullmatch(r"(\d+[smhdwy])+", str(rule["for"])), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            named |= check_expr(rule["expr"])
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))
    # the four alerts the issue asks for
    assert {
        "orion_api_request_seconds_count",
        "orion_queue_depth",
        "orion_scheduler_up",
        "orion_workload_wait_seconds_bucket",
    } <= named


def test_grafana_dashboard_is_complete_and_names_exposed_metrics():
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    named: set[str] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["title"] and p["targets"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
        for t in p["targets"]:
            named |= check_expr(t["expr"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            named |= check_expr(var["definition"])
    # every metric Orion declares is on the dashboard
    families = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in named}
    assert {s.name for s in om.METRICS} <= families
