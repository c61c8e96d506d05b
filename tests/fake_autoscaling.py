"""A fake *autoscaling* multi-node Ray 2.60 cluster on one machine, for tests and benchmarks.

``FakeAutoscalingCluster`` runs ``ray start --head --port 6379 --autoscaling-config <json> --block`` with
Ray's fake multi-node provider (autoscaler v2), so nodes of the declared types really come up and go away
as processes on this machine when there is demand (pending placement groups / tasks, or
``ray.autoscaler.sdk.request_resources``) and when they are idle. No pytest import here: usable from a
benchmark script as well.

    with FakeAutoscalingCluster({"gpu_a100": {"resources": {"CPU": 2, "GPU": 4},
                                              "labels": {"orion.io/pool": "gpu-a100"},
                                              "min_workers": 0, "max_workers": 4}}) as c:
        subprocess.run([sys.executable, "driver.py"], env=c.env)   # driver: ray.init(address=c.address)
        c.wait_for(lambda: len(c.worker_nodes()) == 2, timeout=60)

Facts (measured on this 2-core VM, ray 2.60.0, Nov 2026, another user's pytest sometimes running):

Start / stop
* ``start()`` until the head is ALIVE and the dashboard answers: 3.7-7.4 s. ``shutdown()`` (SIGKILL of
  the process group + recorded pids + descendants, then a /proc check): 0.23-0.37 s; nothing left
  (``live_pids() == []``).
  A SIGTERM to all of them at once was tried first: raylets, GCS and runtime-env agents then hung >4 s.
* ``ray start --node-ip-address=127.0.0.1`` does NOT give the head a loopback node IP: Ray resolves
  127.0.0.1 to the machine's address (``services.resolve_ip_for_localhost``), so the head is e.g.
  ``192.0.2.2``; the GCS answers on 127.0.0.1:6379 all the same. Fake workers (through the subclass)
  are ``127.0.0.1``. Drivers on this machine resolve to the head's IP and so always attach to the head.
* Process layout: ``ray start --block`` (session leader, pgid = its pid) -> gcs_server, raylet, monitor
  (``autoscaler/v2/monitor.py``), dashboard (+ its module processes), ray client server, log monitor.
  Each fake worker node = a raylet + log_monitor started by the *monitor* (so same pgid) + its
  DashboardAgent and RuntimeEnvAgent (children of that raylet) + core workers.

Labels
* Node types accept ``labels`` (in ``ray/autoscaler/ray-schema.json``; autoscaler v2 passes them to
  ``create_node_with_resources_and_labels``, the fake provider to ``RayParams(labels=...)``). Seen on the
  nodes: ``ray.nodes()[i]["Labels"] == {"ray.io/accelerator-type": "A100", "orion.io/pool": "gpu-a100",
  "ray.io/node-id": "<id>"}``; same in ``GcsNodeInfo.labels`` and ``ClusterStatus`` ``NodeInfo.labels``.
* With two node types of identical resources (A100 / H100 pools), ``request_resources(...,
  bundle_label_selectors=[{"orion.io/pool": "gpu-h100"}]*2)`` brought up exactly 2 ``gpu_h100`` nodes,
  and the a100 selector 2 ``gpu_a100`` ones; a PG with ``bundle_label_selector=[{"ray.io/accelerator-type":
  "H100"}]*2`` too (ready 4.3 s).

request_resources (``ray.autoscaler.sdk.request_resources``, from a driver connected by address)
* 2 x {CPU:2, GPU:4} with pool selector -> 2 nodes ALIVE in 2.8-6.1 s (call to GCS ALIVE; 4.5 s typical).
* ``request_resources(bundles=[])`` clears it -> idle nodes gone in 4.3-10.3 s (idle_timeout 0.1 min).
* It is a floor on the cluster's TOTAL shape, not on free capacity: with 2 nodes fully used by a
  placement group (CPU 2/2, GPU 4/4 on both), requesting 2 whole-node bundles added no node in 15 s;
  requesting 3 added exactly one (3.3 s). Shrinking the request back to 2 while the PG still held nodes
  1 and 2 did NOT remove the extra idle node within 60 s (v2 seems to pin the constraint to that idle
  node); it went once the PG was removed.
* Shown as ``ClusterStatus.resource_demands.cluster_constraint_demand`` (list of
  ``ClusterConstraintDemand(bundles_by_count=[ResourceRequestByCount(bundle=..., count=2)])``; the label
  selectors are not shown there).

Ray's own demand (no request_resources)
* Pending PG 2 x {GPU:4} (or {CPU:2,GPU:4}) STRICT_SPREAD -> ready 4.0-5.2 s after creation.
* ``get_cluster_status(gcs_address)`` (``ray.autoscaler.v2.sdk``) -> ``ClusterStatus``:
  - ``.resource_demands.placement_group_demand`` -> ``[PlacementGroupResourceDemand(bundles_by_count=
    [ResourceRequestByCount(bundle={'GPU': 4.0}, count=2)], details='<pg_id>:STRICT_SPREAD|PENDING',
    pg_id='<pg_id>', strategy='STRICT_SPREAD', state='PENDING')]``
  - ``.resource_demands.ray_task_actor_demand``, ``.resource_demands.cluster_constraint_demand``
  - ``.pending_launches`` -> ``[LaunchRequest(ray_node_type_name='gpu_a100', count=1, state=PENDING, ..)]``
  - nodes: ``.active_nodes`` (node_status 'RUNNING') / ``.idle_nodes`` ('IDLE') / ``.pending_nodes`` /
    ``.failed_nodes`` ('DEAD'), each ``NodeInfo(ray_node_type_name, instance_id, node_id, ip_address,
    node_status, resource_usage=NodeUsage(usage=[ResourceUsage(resource_name, total, used)],
    idle_time_ms), node_activity, labels)``; a drained busy node shows ``node_status='DRAINING'``.

Node loss (``kill_node``: SIGKILL raylet, log monitor, agents, workers)
* ``ray.nodes()`` / GCS shows it dead (Alive False) after 14.9-17.1 s with Ray's default health check
  (the GCS health-check detector, "missed too many heartbeats"); 2.9-3.8 s with
  ``system_config=FAST_NODE_DEATH``.
* The autoscaler then marks the instance RAY_STOPPED -> TERMINATING -> TERMINATED and replaces it only
  if something still asks for it: with a request_resources floor of 2 the replacement was ALIVE
  ~2.3 s after the death was seen (19.2-19.4 s after the kill with defaults, 4.4-4.9 s with fast);
  a PG whose bundle was on the killed node was CREATED again on a new node 16.5 s after the kill.

Draining: ``ray._raylet.GcsClient(address=gcs).drain_node(node_id_hex, reason, reason_message,
deadline_timestamp_ms)`` -> ``(is_accepted, rejection_message)``; reason from
``ray.core.generated.autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION" |
"DRAIN_NODE_REASON_IDLE_TERMINATION")`` (the same call as the hidden ``ray drain-node`` CLI).
* Idle node, PREEMPTION (deadline now+30 s) or IDLE_TERMINATION (deadline 0): accepted ``(True, '')``,
  the raylet exits at once (GCS shows it dead in ~0.01 s, its processes gone in 0.4-0.7 s), and the
  autoscaler terminates the instance (RAY_STOPPED -> TERMINATED); a request floor brings a new one
  (2.5-3.0 s).
* Busy node (holds a PG bundle): IDLE_TERMINATION is refused ``(False, 'The node to be idle terminated
  is no longer idle.')``; PREEMPTION with a 15 s deadline is accepted, the node shows DRAINING and
  stays ALIVE (>40 s, past the deadline: Ray does not kill at the deadline, the caller must); its PG
  stays CREATED; it went away (idle) after the PG was removed.

Orion on top (``orion up --address 127.0.0.1:6379 --port <free>`` with ORION_HOME=<tmp>, env ``.env``):
up in 7.9-8.5 s, ``/health`` 200, Serve proxy only on the head (no clash with fake nodes sharing the
machine), idle nodes still removed with Orion attached, ``orion down`` 4.8 s (rc 0; the Serve proxy
keeps answering 404 afterwards, as Orion leaves Serve itself running on a cluster it did not start).

Gotchas
* One such cluster per machine: the fake provider/autoscaler wants the GCS on 6379 (``start()`` refuses
  if the port is taken). All other ports (dashboard, agents, node manager, object manager, client
  server, metrics, runtime-env agent) are free ports picked at start; worker ports are 0 (OS-chosen).
* ``RAY_FAKE_CLUSTER=1`` must be in the head's environment (the provider refuses otherwise); it, the
  ``RAY_enable_autoscaler_v2`` / ``RAY_CLOUD_INSTANCE_ID`` / ``RAY_OVERRIDE_NODE_ID_FOR_TESTING`` head
  settings are NOT in ``.env`` (a driver must not inherit the head's node id override).
* The provider module is imported inside the monitor process: ``start()`` copies the provider files
  (``PROVIDER_FILES``) to ``<tmp>/provider`` and puts that directory on the head's PYTHONPATH.
* ``provider_module=EC2_PROVIDER_MODULE``: Orion's ``OrionEC2NodeProvider`` against a moto server
  (``provider_config``: ``endpoint_url``, ``region``, moto's dummy keys; node types' ``node_config``
  are Orion pools); each instance launched in moto gets a loopback node with
  ``RAY_CLOUD_INSTANCE_ID`` = its instance id (``tests/fake_ec2_autoscaling_provider.py``).
* A node registers in the GCS ~0.3-1 s before the provider has written its pid record (Ray's ``Node()``
  returns after registration): ``kill_node`` waits for the record; ``worker_pids()`` may lag.
* Killing, draining and idle removal are all seen by the autoscaler as a Ray node gone: it terminates the
  instance (``FakeMultiNodeProvider.terminate_node`` -> ``kill_all_processes``) and re-launches only for
  outstanding demand (request floor, pending PG/tasks, ``min_workers``).
* Reproduce the numbers: ``python -m tests.fake_autoscaling_probe [--orion] [--fast-death]``.
* Once (1 run out of ~10), in a long script under load, the GCS reported the *head* node dead ("missed
  too many heartbeats") and the driver went with it; not reproduced since (the same script ran clean
  right after). Keep ``FAST_NODE_DEATH`` for short tests only: it makes false deaths likelier on a busy
  2-core machine.
* ``FAKE_CLUSTER_KEEP_TMP=1`` (or ``keep_tmp=True``) keeps ``<tmp>/ray/session_latest/logs`` (monitor.log
  shows the instance-manager transitions) after ``shutdown()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
GCS_PORT = 6379
# Ray's FakeMultiNodeProvider.FAKE_HEAD_NODE_ID (kept literal so importing this module needs no ray).
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
PROVIDER_MODULE = "fake_autoscaling_provider.LoopbackFakeMultiNodeProvider"
# Orion's EC2 node provider against a moto server, with a loopback node standing in for each instance
EC2_PROVIDER_MODULE = "fake_ec2_autoscaling_provider.EC2LoopbackNodeProvider"
PROVIDER_FILES = ("fake_autoscaling_provider.py", "fake_ec2_autoscaling_provider.py")
# GCS health-check settings that make a SIGKILLed node show dead in ~3-4 s instead of ~15-17 s.
FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address: Ray listens on the node IP too
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it. Raise TimeoutError otherwise.
    Exceptions raised by the predicate count as "not yet" (the last one is chained)."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from last_exc
        time.sleep(interval)


def _pgid(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _start_time(pid: int) -> Optional[int]:
    """Kernel start time of a live, non-zombie process (guards against pid reuse), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return None if rest[0] == "Z" else int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def _all_procs() -> Dict[int, Dict[str, Any]]:
    """pid -> {ppid, pgid, cmd} for every live (non-zombie) process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if rest[0] == "Z":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out[pid] = {"ppid": int(rest[1]), "pgid": int(rest[2]), "start": int(rest[19]), "cmd": cmd}
        except (OSError, IndexError, ValueError):
            continue
    return out


def _descendants(roots: List[int], procs: Dict[int, Dict[str, Any]]) -> set:
    children: Dict[int, List[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p["ppid"], []).append(pid)
    seen, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        for c in children.get(pid, []):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


class FakeAutoscalingCluster:
    """See the module docstring. ``node_types``: autoscaler ``available_node_types`` for workers
    (``resources``, optional ``labels``, ``min_workers``, ``max_workers``; ``node_config`` is added).
    ``provider_module`` / ``provider_config``: another node provider (e.g. ``EC2_PROVIDER_MODULE``,
    whose node types' ``node_config`` are Orion pools) and what it needs in the provider section."""

    def __init__(
        self,
        node_types: Dict[str, Dict[str, Any]],
        idle_timeout_minutes: float = 0.1,
        head_resources: Optional[Dict[str, float]] = None,
        max_workers: int = 20,
        upscaling_speed: float = 1.0,
        include_dashboard: bool = True,
        extra_env: Optional[Dict[str, str]] = None,
        keep_tmp: Optional[bool] = None,
        system_config: Optional[Dict[str, Any]] = None,
        provider_module: str = PROVIDER_MODULE,
        provider_config: Optional[Dict[str, Any]] = None,
    ):
        self.node_types = {k: dict(v) for k, v in node_types.items()}
        self.idle_timeout_minutes = idle_timeout_minutes
        self.head_resources = dict(head_resources if head_resources is not None else {"CPU": 2})
        self.max_workers = max_workers
        self.upscaling_speed = upscaling_speed
        self.include_dashboard = include_dashboard
        self.extra_env = dict(extra_env or {})
        # Ray `_system_config` for the head (GCS); e.g. FAST_NODE_DEATH to see a killed node dead sooner
        self.system_config = dict(system_config or {})
        self.provider_module = provider_module
        self.provider_config = dict(provider_config or {})
        # keep the temp dir (Ray logs under <tmp>/ray/session_latest/logs) after shutdown
        self.keep_tmp = (os.environ.get("FAKE_CLUSTER_KEEP_TMP") == "1") if keep_tmp is None else keep_tmp
        self.address = f"127.0.0.1:{GCS_PORT}"
        self.gcs_address = self.address
        self.dashboard_port: Optional[int] = None
        self.dashboard_url: Optional[str] = None
        self.tmp: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None
        self.pgid: Optional[int] = None
        # every process seen belonging to this cluster: pid -> kernel start time (pid-reuse guard)
        self.started_pids: Dict[int, int] = {}
        self.startup_seconds: Optional[float] = None
        self._shut = False
        self._gcs_client = None

    # ------------------------------------------------------------------ config / env
    def autoscaling_config(self) -> Dict[str, Any]:
        types = {}
        for name, t in self.node_types.items():
            t = dict(t)
            t.setdefault("node_config", {})
            t.setdefault("min_workers", 0)
            t.setdefault("max_workers", self.max_workers)
            types[name] = t
        types["ray.head.default"] = {
            "resources": dict(self.head_resources),
            "node_config": {},
            "max_workers": 0,
        }
        return {
            "cluster_name": "fake-autoscaling",
            "max_workers": self.max_workers,
            "upscaling_speed": self.upscaling_speed,
            "idle_timeout_minutes": self.idle_timeout_minutes,
            "provider": {
                "type": "external",
                "module": self.provider_module,
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "launch_multiple": True,
                "head_node_id": FAKE_HEAD_NODE_ID,
                "gcs_address": self.gcs_address,
                "node_ip_address": "127.0.0.1",
                "pid_dir": str(self.tmp / "pids") if self.tmp else None,
                **self.provider_config,
            },
            "auth": {"ssh_user": "ubuntu"},
            "docker": {},
            "head_node_type": "ray.head.default",
            "available_node_types": types,
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }

    @property
    def env(self) -> Dict[str, str]:
        """Environment a subprocess (driver, `orion up --address`, benchmark) needs to talk to the
        cluster: auth off, and RAY_ADDRESS pointing here (pass the address explicitly anyway)."""
        e = dict(os.environ)
        for k in (
            "RAY_enable_autoscaler_v2",
            "RAY_CLOUD_INSTANCE_ID",
            "RAY_OVERRIDE_NODE_ID_FOR_TESTING",
            "RAY_FAKE_CLUSTER",
        ):
            e.pop(k, None)
        e.update({"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0"})
        return e

    def _head_env(self) -> Dict[str, str]:
        e = dict(os.environ)
        e.pop("RAY_ADDRESS", None)
        # only the provider module is added to the path (a copy in <tmp>/provider), not all of tests/
        pp = [str(self.tmp / "provider")] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])
        e.update(
            {
                "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_FAKE_CLUSTER": "1",
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "RAY_enable_autoscaler_v2": "1",
                "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
                "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
                "PYTHONPATH": os.pathsep.join(pp),
            }
        )
        e.update(self.extra_env)
        return e

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90) -> "FakeAutoscalingCluster":
        if self.proc is not None:
            raise RuntimeError("already started")
        if port_open(GCS_PORT):
            raise RuntimeError(
                f"port {GCS_PORT} is in use: another Ray (or something else) holds it; "
                "the fake autoscaler needs the GCS there"
            )
        t0 = time.monotonic()
        # short path: Ray puts unix sockets under <temp-dir>/session_*/sockets
        self.tmp = Path(tempfile.mkdtemp(prefix="ofc-", dir="/tmp"))
        (self.tmp / "pids").mkdir()
        (self.tmp / "provider").mkdir()
        for name in PROVIDER_FILES:
            shutil.copy(HERE / name, self.tmp / "provider")
        cfg_path = self.tmp / "autoscaling.json"
        cfg_path.write_text(json.dumps(self.autoscaling_config(), indent=1))
        self.dashboard_port = free_port()
        head = dict(self.head_resources)
        cmd = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={GCS_PORT}",
            "--node-ip-address=127.0.0.1",
            f"--autoscaling-config={cfg_path}",
            f"--temp-dir={self.tmp / 'ray'}",
            f"--num-cpus={head.pop('CPU', 2)}",
            f"--num-gpus={head.pop('GPU', 0)}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
        ]
        if self.system_config:
            cmd.append(f"--system-config={json.dumps(self.system_config, separators=(',', ':'))}")
        if "object_store_memory" in head:
            cmd.append(f"--object-store-memory={int(head.pop('object_store_memory'))}")
        if head:
            cmd.append(f"--resources={json.dumps(head)}")
        if self.include_dashboard:
            cmd += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
            self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        else:
            cmd += ["--include-dashboard=false"]
        self._log = open(self.tmp / "ray-start.log", "wb")
        self.proc = subprocess.Popen(
            cmd,
            env=self._head_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(self.tmp),
        )
        self.pgid = self.proc.pid
        self.started_pids[self.proc.pid] = _start_time(self.proc.pid) or 0
        try:

            def head_up():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"`ray start` exited {self.proc.returncode}:\n{self.log_tail()}")
                return any(n["is_head"] for n in self.nodes())

            deadline = time.monotonic() + timeout
            while True:
                try:
                    if head_up():
                        break
                except RuntimeError:
                    raise
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"head not up after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.3)
            if self.include_dashboard:
                wait_for(lambda: port_open(self.dashboard_port), 60, what="dashboard")
        except BaseException:
            self.shutdown()
            raise
        self.startup_seconds = time.monotonic() - t0
        self._remember_pids()
        return self

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.shutdown()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.tmp / "ray-start.log").read_text(errors="replace")[-n:]
        except (OSError, TypeError):
            return ""

    # ------------------------------------------------------------------ GCS views
    def gcs_client(self):
        if self._gcs_client is None:
            from ray._raylet import GcsClient

            self._gcs_client = GcsClient(address=self.gcs_address)
        return self._gcs_client

    def all_nodes(self) -> List[Dict[str, Any]]:
        """Every node the GCS knows (alive and dead): node_id, alive, is_head, resources, labels, ..."""
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        out = []
        for nid, info in self.gcs_client().get_all_node_info(timeout=5).items():
            out.append(
                {
                    "node_id": nid.hex(),
                    "alive": info.state == GcsNodeInfo.GcsNodeState.ALIVE,
                    "is_head": bool(info.is_head_node),
                    "node_type": info.node_type_name or None,
                    "instance_id": info.instance_id or None,
                    "ip": info.node_manager_address,
                    "resources": dict(info.resources_total),
                    "labels": dict(info.labels),
                }
            )
        return out

    def nodes(self) -> List[Dict[str, Any]]:
        """Alive nodes, head included."""
        return [n for n in self.all_nodes() if n["alive"]]

    def worker_nodes(self, node_type: Optional[str] = None) -> List[Dict[str, Any]]:
        return [
            n for n in self.nodes() if not n["is_head"] and (node_type is None or n["node_type"] == node_type)
        ]

    def cluster_status(self):
        """``ray.autoscaler.v2.sdk.get_cluster_status(gcs_address)`` (a ``ClusterStatus``)."""
        from ray.autoscaler.v2.sdk import get_cluster_status

        return get_cluster_status(self.gcs_address)

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 60,
        interval: float = 0.25,
        what: str = "condition",
    ) -> Any:
        return wait_for(predicate, timeout, interval, what)

    # ------------------------------------------------------------------ processes
    def node_pid_records(self) -> Dict[str, Dict[str, List[int]]]:
        """node_id -> {process kind -> [pids]} as written by the provider when it started the node."""
        out = {}
        if not self.tmp:
            return out
        for p in (self.tmp / "pids").glob("*.json"):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            out[rec["node_id"]] = rec["pids"]
        return out

    def worker_pids(self, node_id: Optional[str] = None) -> Dict[str, List[int]]:
        """node_id -> live pids of that fake worker node (its raylet, agents, log monitor and the
        raylet's children: core workers). Only nodes still having live processes are listed."""
        procs = _all_procs()
        out = {}
        for nid, kinds in self.node_pid_records().items():
            if node_id is not None and nid != node_id:
                continue
            roots = [pid for pids in kinds.values() for pid in pids if pid in procs]
            pids = sorted(set(roots) | _descendants(roots, procs))
            if pids:
                out[nid] = pids
        return out

    def kill_node(self, node_id: str) -> List[int]:
        """SIGKILL every process of one fake worker node (raylet first), as a machine loss would.
        Returns the pids killed. The autoscaler's provider still lists the node until it reconciles."""
        # the provider writes a node's pids when Ray's Node() returns, ~1 s after the node registers
        try:
            pids = wait_for(
                lambda: self.worker_pids(node_id).get(node_id), 30, what=f"pid record of {node_id}"
            )
        except TimeoutError:
            raise KeyError(f"no live processes recorded for node {node_id}") from None
        raylets = self.node_pid_records()[node_id].get("raylet", [])
        order = [p for p in raylets if p in pids] + [p for p in pids if p not in raylets]
        self._remember_pids()
        for pid in order:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return order

    def _ours(self) -> set:
        """Live pids that belong to this cluster: its process group, processes already remembered
        (same pid *and* start time), the recorded fake-node pids, anything whose command line names
        our temp dir, and all their descendants. Never matches another cluster's processes (other
        temp dir, other process group)."""
        procs = _all_procs()
        me = os.getpid()
        tmp = str(self.tmp) if self.tmp else None
        ours = set()
        for pid, p in procs.items():
            if self.pgid is not None and p["pgid"] == self.pgid:
                ours.add(pid)
            elif tmp and tmp in p["cmd"]:
                ours.add(pid)
            elif pid in self.started_pids and self.started_pids[pid] in (p["start"], 0):
                ours.add(pid)
        for kinds in self.node_pid_records().values():
            ours |= {pid for pids in kinds.values() for pid in pids if pid in procs}
        ours |= _descendants(list(ours), procs)
        ours.discard(me)
        return ours

    def _remember_pids(self) -> set:
        procs = _all_procs()
        ours = self._ours()
        for pid in ours:
            if pid in procs:
                self.started_pids.setdefault(pid, procs[pid]["start"])
        return ours

    def _still_alive(self) -> List[int]:
        return sorted(
            pid
            for pid, st in self.started_pids.items()
            if _start_time(pid) is not None and _start_time(pid) == st
        )

    def live_pids(self) -> List[int]:
        """Pids this cluster started (ever seen) that are still alive — empty after ``shutdown()``."""
        if not self._shut:
            self._remember_pids()
        return self._still_alive()

    def shutdown(self, grace: float = 0.0) -> None:
        """Stop everything this cluster started (head, autoscaler/monitor, every fake worker node and
        their workers) by PID / process group, check in /proc that nothing is left, remove the temp
        dir. Idempotent; safe in a ``finally``. Default is SIGKILL straight away (~0.5 s): a SIGTERM
        to all at once left raylets/GCS/runtime-env agents hanging >4 s in their graceful shutdown.
        ``grace > 0``: SIGTERM to `ray start --block` first and wait up to ``grace`` seconds."""
        if self._shut:
            return
        self._shut = True
        self._gcs_client = None
        try:
            if self.proc is not None:
                self._remember_pids()
                if grace > 0 and self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + grace
                    while time.monotonic() < deadline and self._remember_pids():
                        time.sleep(0.2)
                for _ in range(20):
                    left = self._remember_pids() | set(self._still_alive())
                    if not left:
                        break
                    for pid in left:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.2)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                left = sorted(self._ours() | set(self._still_alive()))
                if left:
                    raise RuntimeError(f"processes left after shutdown: {left}")
        finally:
            try:
                self._log.close()
            except Exception:
                pass
            if self.tmp is not None and not self.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)


__all__ = [
    "FakeAutoscalingCluster",
    "wait_for",
    "free_port",
    "port_open",
    "FAKE_HEAD_NODE_ID",
    "EC2_PROVIDER_MODULE",
    "FAST_NODE_DEATH",
    "GCS_PORT",
]
