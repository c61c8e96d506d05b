"""The Ray autoscaler behind one small adapter: ask for capacity, read what it is doing.

Orion's autoscaler does not launch machines itself: it tells the Ray autoscaler the cluster shape it
wants (``request_resources`` with whole-node bundles and each pool's label selector — a floor the
Ray autoscaler keeps, launching through its node provider: the fake one in tests, Orion's EC2
plugin or KubeRay in production) and reads back pending and failed launches and Ray's own pending
placement-group demand (``ray.autoscaler.v2.sdk.get_cluster_status``).

GPU telemetry comes from NVML on each GPU node, read by a zero-CPU probe task pinned to the node;
on a node without an NVIDIA device (every node of these test machines) the probe says so.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

log = logging.getLogger("orion.autoscaler")


def _nvml_probe() -> dict:
    """Runs on one node: per-GPU utilisation and memory from NVML, or why there is none."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return {"status": "unavailable", "reason": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded on a CPU node
        return {"status": "no_device", "reason": f"no NVIDIA device ({type(exc).__name__})"}
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(
                {
                    "index": i,
                    "utilization_pct": float(util.gpu),
                    "memory_used_bytes": int(mem.used),
                    "memory_total_bytes": int(mem.total),
                }
            )
        if not gpus:
            return {"status": "no_device", "reason": "no NVIDIA device (NVML sees 0 GPUs)"}
        return {"status": "ok", "gpus": gpus}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


class RayCapacity:
    """``request``, ``status`` and ``gpu_telemetry`` over the connected Ray cluster."""

    def __init__(self, gcs_address: Optional[str] = None):
        self._gcs = gcs_address
        self._probe = None

    def _address(self) -> str:
        if self._gcs is None:
            import ray

            self._gcs = ray.get_runtime_context().gcs_address
        return self._gcs

    def request(self, bundles: list[dict], selectors: list[dict]) -> None:
        """The cluster shape to keep (replaces the previous request; empty clears it)."""
        from ray.autoscaler.sdk import request_resources

        if bundles:
            request_resources(bundles=bundles, bundle_label_selectors=selectors)
        else:
            request_resources(bundles=[])

    def release(self, node_id: str) -> tuple[bool, str]:
        """Ask Ray to terminate this idle node now (the GCS drain with the idle-termination
        reason: refused when the node is not idle). Orion picks *which* node goes — the
        emptiest, most fragmented — instead of waiting for Ray's idle timeout to pick one."""
        from ray._raylet import GcsClient
        from ray.core.generated import autoscaler_pb2

        reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION")
        accepted, why = GcsClient(address=self._address()).drain_node(
            node_id, reason, "released by orion-autoscaler (scale-down)", int((time.time() + 60) * 1000)
        )
        return bool(accepted), str(why or "")

    def status(self) -> dict[str, Any]:
        """Pending and failed launches by Ray node type, Ray's pending placement-group demand."""
        from ray.autoscaler.v2.sdk import get_cluster_status

        st = get_cluster_status(self._address())
        pending: dict[str, int] = {}
        for lr in st.pending_launches:
            pending[lr.ray_node_type_name] = pending.get(lr.ray_node_type_name, 0) + lr.count
        for n in st.pending_nodes:
            pending[n.ray_node_type_name] = pending.get(n.ray_node_type_name, 0) + 1
        failed = [
            {
                "node_type": lr.ray_node_type_name,
                "count": lr.count,
                "at": lr.failed_ts_s or lr.request_ts_s,
                "details": lr.details or "",
            }
            for lr in st.failed_launches
        ]
        failed += [
            {
                "node_type": n.ray_node_type_name,
                "count": 1,
                "at": None,
                "details": n.failure_detail or n.details or "",
            }
            for n in st.failed_nodes
        ]
        gangs = []
        for d in st.resource_demands.placement_group_demand:
            bundles = []
            for b in d.bundles_by_count:
                bundles += [dict(b.bundle)] * int(b.count)
            gangs.append({"bundles": bundles, "strategy": d.strategy or "PACK", "pg_id": d.pg_id})
        # tasks and actors Ray cannot place (e.g. a Serve replica waiting for a GPU): each a
        # one-bundle gang, so Orion's floor covers them too rather than fighting Ray's own demand
        for d in st.resource_demands.ray_task_actor_demand:
            for b in d.bundles_by_count:
                gangs += [{"bundles": [dict(b.bundle)], "strategy": "PACK", "pg_id": None}] * int(b.count)
        node_types = {}
        for n in list(st.active_nodes) + list(st.idle_nodes):
            if n.node_id:
                node_types[n.node_id] = n.ray_node_type_name
        return {
            "pending_launches": pending,
            "failed_launches": failed,
            "ray_pending": gangs,
            "node_types": node_types,
            "at": time.time(),
        }

    def gpu_telemetry(self, node_ids: list[str], timeout_s: float = 5.0) -> dict[str, dict]:
        """NVML per node (only GPU nodes are probed by the caller)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._probe is None:
            self._probe = ray.remote(num_cpus=0, max_retries=0)(_nvml_probe)
        refs = {
            n: self._probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
            for n in node_ids
        }
        out = {}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        done = set(ready)
        for n, ref in refs.items():
            if ref not in done:
                out[n] = {"status": "unavailable", "reason": f"probe did not answer in {timeout_s}s"}
                ray.cancel(ref, force=True)
                continue
            try:
                out[n] = ray.get(ref)
            except Exception as exc:
                out[n] = {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        return out
