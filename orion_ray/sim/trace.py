"""Reading the Alibaba openb trace files (node list and pod lists) into engine types.

Nodes: ``sn, cpu_milli, memory_mib, gpu, model``. Pods: ``name, cpu_milli, memory_mib, num_gpu,
gpu_milli`` and optionally ``gpu_spec, qos, pod_phase, creation_time, deletion_time,
scheduled_time`` (the ``multigpu*`` lists have only the first five columns). Times are ignored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Optional

from ..policy.placement import BundleRequest, ClusterArrays, Req

POD_REQUIRED = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
NODE_REQUIRED = ("sn", "cpu_milli", "memory_mib", "gpu")


@dataclass(frozen=True)
class NodeRow:
    """One node of the node list."""

    name: str
    cpu_milli: int
    memory_mib: float
    gpus: int
    model: Optional[str]


@dataclass(frozen=True)
class PodRow:
    """One pod of a pod list, as a bundle request (and its array form)."""

    name: str
    bundle: BundleRequest
    req: Req


def _check_columns(path: str, header: Optional[list], required: tuple) -> None:
    missing = [c for c in required if c not in (header or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")


def read_nodes(path: str) -> list[NodeRow]:
    """The node list (``openb_node_list_gpu_node.csv`` format)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames, NODE_REQUIRED)
        return [
            NodeRow(
                r["sn"],
                int(float(r["cpu_milli"])),
                float(r["memory_mib"]),
                int(float(r["gpu"])),
                (r.get("model") or "").strip() or None,
            )
            for r in reader
        ]


def parse_spec(spec: Optional[str]) -> Optional[frozenset]:
    """``"V100M16|V100M32"`` to the set of allowed models; empty means any."""
    models = frozenset(s.strip() for s in (spec or "").split("|") if s.strip())
    return models or None


def read_pods(path: str) -> list[PodRow]:
    """A pod list in either openb column format."""
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames, POD_REQUIRED)
        for i, r in enumerate(reader):
            num = int(float(r["num_gpu"]))
            milli = int(float(r["gpu_milli"]))
            if num and milli <= 0:
                num = 0  # a GPU count with no GPU share requests no GPU
            if num > 1 and milli < 1000:
                raise ValueError(f"{path}: pod {r.get('name', i)} shares more than one GPU")
            b = BundleRequest(
                cpu=int(float(r["cpu_milli"])) / 1000.0,
                mem=float(r["memory_mib"]),
                num_gpu=num,
                gpu_fraction=milli / 1000.0 if num else 1.0,
                gpu_types=parse_spec(r.get("gpu_spec")) if num else None,
            )
            out.append(PodRow(r.get("name") or f"pod-{i}", b, Req.from_bundle(b)))
    return out


def cluster_arrays(nodes: list[NodeRow]) -> ClusterArrays:
    """A fresh, empty cluster of the node list (all capacity free)."""
    return ClusterArrays(
        [n.name for n in nodes],
        [n.cpu_milli for n in nodes],
        [n.memory_mib for n in nodes],
        [n.model for n in nodes],
        [[1000] * n.gpus for n in nodes],
    )
