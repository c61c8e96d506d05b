""" "Used" telemetry for usage records: what a running workload actually consumed, where it can be
measured, so cost = max(requested, used) (``UsageRecord.charged``) charges a workload that used
more than it asked for.

What Ray 2.60 gives, and what is recorded here:
- Ray's state API lists each running task with its worker process (``worker_pid``, ``node_id``);
  Orion names its tasks ``orion-<workload id>-<attempt>``, so a task is a workload's run.
- Each node's dashboard reporter samples every *worker process* of that node with psutil:
  ``cpuPercent`` (since its previous sample) and ``memoryInfo.rss``, served by the dashboard at
  ``GET /nodes/<node id>`` (``data.detail.workers``, psutil's names in camelCase). A task worker
  runs one task at a time, so its process's figures are the task's: ``used_cpus = cpuPercent /
  100``, ``used_memory_gib = rss / GiB``. Not counted: processes the task starts itself (the
  reporter samples Ray's workers, not their children) and shell entrypoints (Ray jobs run them as
  subprocesses of a supervisor, not as workers): those workloads get no "used" figures, and
  cost stays what they requested.
- A GPU's utilisation comes from NVML (``gpu_probe``: pid → GPUs busy, 0..n) where a device
  exists; the reporter's own per-worker ``gpuUtilization`` (also NVML) is the fallback.

Each sample is stored as a usage record of kind ``used`` (``used_*`` set, nothing requested) over
the interval since the previous sample; ``apply_used`` folds them into a workload's records as
the time-weighted mean over each held stretch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from .usage import GIB, UsageRecord

log = logging.getLogger("orion.cost")

USED_KIND = "used"
TASK_PREFIX = "orion-"


@dataclass(frozen=True)
class Used:
    """What one workload's run consumed at a sample (None: not measured)."""

    cpus: Optional[float] = None
    memory_gib: Optional[float] = None
    gpus: Optional[float] = None


class TelemetryProbe(Protocol):
    """Measures running workloads (``workload_ids``); returns what it could measure, by id."""

    def sample(self, workload_ids: Iterable[str]) -> dict[str, Used]: ...


def workload_of(task_name: Optional[str]) -> Optional[str]:
    """The workload id in an Orion task's name (``orion-<workload id>-<attempt>``)."""
    if not task_name or not task_name.startswith(TASK_PREFIX):
        return None
    body = task_name[len(TASK_PREFIX) :]
    wid, _, attempt = body.rpartition("-")
    return wid if wid and attempt.isdigit() else None


def _rss(info: Any) -> Optional[float]:
    """``memoryInfo.rss`` as the reporter serialises psutil's ``pmem`` (an object or a list)."""
    if isinstance(info, Mapping):
        v = info.get("rss")
    elif isinstance(info, (list, tuple)) and info:
        v = info[0]
    else:
        return None
    return float(v) if isinstance(v, (int, float)) else None


def _field(worker: Mapping[str, Any], camel: str) -> Any:
    """A reporter field: Ray 2.60 sends psutil's names in camelCase (``cpuPercent``,
    ``memoryInfo``, ``gpuUtilization``: ``to_google_style``); the snake_case name is the fallback."""
    if camel in worker:
        return worker[camel]
    return worker.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


class RayTelemetry:
    """``TelemetryProbe`` over Ray: running tasks from the state API (``list_tasks``), each
    worker's CPU and memory from its node's dashboard reporter (``node_workers``), GPUs from
    ``gpu_probe`` (pids → GPUs busy). Each source is a function, so tests pass fakes."""

    def __init__(
        self,
        *,
        list_tasks: Callable[[], list[dict[str, Any]]],
        node_workers: Callable[[str], list[dict[str, Any]]],
        gpu_probe: Optional[Callable[[set[int]], dict[int, float]]] = None,
    ):
        self.list_tasks = list_tasks
        self.node_workers = node_workers
        self.gpu_probe = gpu_probe

    def sample(self, workload_ids: Iterable[str]) -> dict[str, Used]:
        """See ``TelemetryProbe``; a source that fails leaves its figures unmeasured."""
        wanted = set(workload_ids)
        runs: dict[str, tuple[str, int]] = {}  # workload -> (node, pid)
        for t in self.list_tasks():
            wid = workload_of(t.get("name"))
            pid, node = t.get("worker_pid"), t.get("node_id")
            if wid in wanted and pid and node and t.get("state") == "RUNNING":
                runs[wid] = (str(node), int(pid))
        workers: dict[tuple[str, int], dict[str, Any]] = {}
        for node in {n for n, _ in runs.values()}:
            try:
                for w in self.node_workers(node):
                    if w.get("pid") is not None:
                        workers[(node, int(w["pid"]))] = w
            except Exception:  # a node's reporter not answering: its workloads go unmeasured
                log.debug("no worker stats from node %s", node, exc_info=True)
        gpus: dict[int, float] = {}
        if self.gpu_probe is not None and runs:
            try:
                gpus = self.gpu_probe({pid for _, pid in runs.values()})
            except Exception:
                log.debug("the GPU probe failed", exc_info=True)
        out: dict[str, Used] = {}
        for wid, (node, pid) in runs.items():
            w = workers.get((node, pid), {})
            cpu = _field(w, "cpuPercent")
            rss = _rss(_field(w, "memoryInfo"))
            gpu = gpus.get(pid)
            reported_gpu = _field(w, "gpuUtilization")
            if gpu is None and reported_gpu:
                gpu = float(reported_gpu) / 100.0
            used = Used(
                cpus=float(cpu) / 100.0 if isinstance(cpu, (int, float)) else None,
                memory_gib=rss / GIB if rss is not None else None,
                gpus=gpu,
            )
            if used != Used():
                out[wid] = used
        return out


def ray_telemetry(dashboard_url: Optional[str]) -> Optional[RayTelemetry]:
    """``RayTelemetry`` on this cluster (inside a Ray process), with NVML's probe when a device
    exists; None without a dashboard (no reporter to ask)."""
    if not dashboard_url:
        return None
    import httpx

    def list_tasks() -> list[dict[str, Any]]:
        from ray.util.state import list_tasks as ray_list_tasks

        # the dashboard named explicitly: without it the state API looks for "a local cluster"
        # (RAY_ADDRESS, /tmp/ray/ray_current_cluster), which may be another one on the machine
        rows = ray_list_tasks(
            address=dashboard_url, filters=[("state", "=", "RUNNING")], detail=True, limit=10_000, timeout=10
        )
        return [{k: getattr(r, k, None) for k in ("name", "state", "worker_pid", "node_id")} for r in rows]

    def node_workers(node_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{dashboard_url}/nodes/{node_id}", headers=_ray_auth(), timeout=10)
        r.raise_for_status()
        return list(((r.json().get("data") or {}).get("detail") or {}).get("workers") or [])

    return RayTelemetry(list_tasks=list_tasks, node_workers=node_workers, gpu_probe=nvml_probe())


def _ray_auth() -> dict[str, str]:
    """The header Ray's token auth wants on the dashboard (as its own SDK clients send it)."""
    try:
        from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

        return dict(get_auth_headers_if_auth_enabled({}))
    except Exception:  # an older Ray, or no token: no header
        return {}


def nvml_probe() -> Optional[Callable[[set[int]], dict[int, float]]]:
    """pids → GPUs busy (utilisation / 100, summed over devices) from NVML; None when NVML or a
    device is missing (then the reporter's figure, if any, stands)."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:
        return None
    if count == 0:
        return None

    def probe(pids: set[int]) -> dict[int, float]:
        out: dict[int, float] = {}
        for i in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                samples = pynvml.nvmlDeviceGetProcessUtilization(handle, 0)
            except pynvml.NVMLError:  # no samples yet on this device
                continue
            for s in samples:
                if s.pid in pids:
                    out[s.pid] = out.get(s.pid, 0.0) + float(s.smUtil) / 100.0
        return out

    return probe


def used_records(
    samples: Mapping[str, Used], tenants: Mapping[str, str], *, start: float, end: float
) -> list[UsageRecord]:
    """The samples of one tick as ``used`` records over [start, end)."""
    return [
        UsageRecord(
            kind=USED_KIND,
            ref=wid,
            tenant=tenants.get(wid, ""),
            pool="",
            market="",
            start=start,
            end=end,
            used_gpus=u.gpus,
            used_cpus=u.cpus,
            used_memory_gib=u.memory_gib,
        )
        for wid, u in sorted(samples.items())
        if end > start
    ]


def _mean(pairs: list[tuple[float, Optional[float]]]) -> Optional[float]:
    known = [(w, v) for w, v in pairs if v is not None and w > 0]
    total = sum(w for w, _ in known)
    return sum(w * v for w, v in known) / total if total > 0 else None


def apply_used(records: Iterable[UsageRecord], used: Iterable[UsageRecord]) -> list[UsageRecord]:
    """Each workload record with its ``used_*`` set to the time-weighted mean of the ``used``
    samples that overlap it (weighted by the overlap); records without samples are unchanged."""
    by_ref: dict[str, list[UsageRecord]] = {}
    for u in used:
        by_ref.setdefault(u.ref, []).append(u)
    out = []
    for r in records:
        samples = by_ref.get(r.ref) if r.kind == "workload" else None
        if not samples:
            out.append(r)
            continue
        overlaps = [(max(0.0, min(r.end, u.end) - max(r.start, u.start)), u) for u in samples]
        overlaps = [(w, u) for w, u in overlaps if w > 0]
        if not overlaps:
            out.append(r)
            continue
        out.append(
            replace(
                r,
                used_gpus=_mean([(w, u.used_gpus) for w, u in overlaps]),
                used_cpus=_mean([(w, u.used_cpus) for w, u in overlaps]),
                used_memory_gib=_mean([(w, u.used_memory_gib) for w, u in overlaps]),
            )
        )
    return out


def running_workloads(store: Any) -> dict[str, str]:
    """Running workloads' tenants, by id."""
    return {
        r[0]: r[1]
        for r in store._query("SELECT workload_id, tenant_id FROM workloads WHERE status='running'", ())
    }


class Sampler:
    """Samples on the scheduler's cost tick, off its event loop: each ``tick`` stores the sample
    the previous tick started (when it has finished; one still measuring skips this tick) and
    starts the next one, in a thread of its own, for the workloads running now. A probe's calls
    (the state API, the dashboard, NVML) may take seconds; the scheduling loop never waits."""

    def __init__(self, probe: TelemetryProbe):
        from concurrent.futures import ThreadPoolExecutor

        self.probe = probe
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="orion-telemetry")
        self.pending: Optional[tuple[Any, float, float, dict[str, str]]] = None

    def tick(self, store: Any, *, start: float, end: float) -> int:
        """Store the finished sample (as ``used`` records); start the next over [start, end)."""
        from .store_rows import add_records

        written = 0
        if self.pending is not None:
            future, s, e, tenants = self.pending
            if not future.done():
                return 0
            self.pending = None
            try:
                samples = future.result()
            except Exception:
                log.warning(
                    "the telemetry probe failed; this interval has no \"used\" figures", exc_info=True
                )
                samples = {}
            written = add_records(store, used_records(samples, tenants, start=s, end=e))
        tenants = running_workloads(store)
        if tenants:
            self.pending = (self.pool.submit(self.probe.sample, list(tenants)), start, end, tenants)
        return written


def sampler_for(dashboard_url: Optional[str]) -> Optional[Sampler]:
    """The scheduler's sampler on this Ray cluster (None without a dashboard)."""
    probe = ray_telemetry(dashboard_url)
    return Sampler(probe) if probe is not None else None


def used_samples(store: Any, *, since: float, until: float) -> list[UsageRecord]:
    """The ``used`` records overlapping [since, until)."""
    rows = store._query(
        "SELECT ref, tenant_id, start_at, end_at, used_gpus, used_cpus, used_memory_gib FROM usage_records "
        "WHERE kind=? AND end_at > ? AND start_at < ?",
        (USED_KIND, since, until),
    )
    return [
        UsageRecord(
            USED_KIND,
            r[0],
            r[1],
            "",
            "",
            float(r[2]),
            float(r[3]),
            used_gpus=r[4],
            used_cpus=r[5],
            used_memory_gib=r[6],
        )  # fmt: skip
        for r in rows
    ]
