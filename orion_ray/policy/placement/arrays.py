"""Array form of a cluster snapshot and of a request: what every policy scores, vectorised.

GPU capacity is kept in integer milli-GPUs and CPU in integer milli-cores so that "does it fit" is
exact (the trace is in those units, and a float 0.54 - 0.3 - 0.24 must not come out negative). A node
with fewer GPUs than the widest node is padded with zero-free GPUs, which behave exactly like fully
used GPUs in every check, so no mask is needed.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .types import BundleRequest, ClusterSnapshot

MILLI = 1000

# Node versions are stamps drawn from one process-wide counter, not per-array counts: a stamp then
# names one node state everywhere, so a score cache may serve every copy of an array (a gang's
# scratch copy, a what-if, the next cycle's state) and stays right whichever copy changed.
_STAMPS = itertools.count(1)


def fresh_stamps(n: int) -> np.ndarray:
    """``n`` version stamps never handed out before."""
    return np.fromiter(itertools.islice(_STAMPS, n), dtype=np.int64, count=n)


def to_milli(x: float) -> int:
    """Float units to integer thousandths (rounded: 0.46 GPU is 460 milli, not 459)."""
    return int(round(x * MILLI))


@dataclass(frozen=True)
class Req:
    """A bundle in array units. ``key`` identifies its shape (equal keys score identically)."""

    cpu: int  # milli-cores
    mem: float
    num_gpu: int
    milli: int  # per GPU; 0 when num_gpu == 0
    types: Optional[frozenset[str]]

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.cpu, self.mem, self.num_gpu, self.milli, self.types)

    @property
    def shared(self) -> bool:
        return self.num_gpu == 1 and 0 < self.milli < MILLI

    @property
    def gpu_milli_total(self) -> int:
        return self.num_gpu * self.milli

    @classmethod
    def from_bundle(cls, b: BundleRequest) -> "Req":
        """Convert a public request; CPU-only bundles drop their (meaningless) GPU-type constraint."""
        milli = to_milli(b.gpu_fraction) if b.num_gpu else 0
        if b.num_gpu and milli == 0:
            milli = 1  # a tiny fraction still needs some GPU: never round a GPU request to nothing
        types = b.gpu_types if b.num_gpu else None
        return cls(to_milli(b.cpu), float(b.mem), int(b.num_gpu), milli, types)


def node_priority(node_ids: Sequence[str], seed: int) -> np.ndarray:
    """A fixed pseudo-random rank per node (0 = preferred), a function of the id and ``seed``.

    Ties between equally scored nodes go to the best rank. A *fixed* order matters: it makes a
    policy keep filling the same nodes instead of scattering work (the FGD paper's simulator does
    the same through randomly prefixed node names).
    """
    h = np.array([zlib.crc32(f"{seed}:{n}".encode()) for n in node_ids], dtype=np.int64)
    order = np.lexsort((np.arange(len(node_ids)), h))
    rank = np.empty(len(node_ids), dtype=np.int64)
    rank[order] = np.arange(len(node_ids))
    return rank


class ClusterArrays:
    """Mutable array view of a cluster (the engine's scratch space; snapshots stay immutable)."""

    def __init__(
        self,
        node_ids: Sequence[str],
        cpu: Iterable[int],
        mem: Iterable[float],
        gpu_type: Sequence[Optional[str]],
        gpu: Sequence[Sequence[int]],
        gpu_cap: Optional[Sequence[int]] = None,
    ) -> None:
        self.node_ids = list(node_ids)
        self.index = {n: i for i, n in enumerate(self.node_ids)}
        n = len(self.node_ids)
        self.cpu = np.asarray(list(cpu), dtype=np.int64).reshape(n)
        self.mem = np.asarray(list(mem), dtype=np.float64).reshape(n)
        width = max([len(g) for g in gpu] + [1])
        self.gpu = np.zeros((n, width), dtype=np.int64)
        for i, g in enumerate(gpu):
            self.gpu[i, : len(g)] = g
        self.gpu_count = np.array([len(g) for g in gpu], dtype=np.int64)
        self.gpu_cap = np.asarray(gpu_cap, dtype=np.int64) if gpu_cap is not None else self.gpu_count * MILLI
        # (no None in it; Optional because lookups index it with a node's possibly absent model)
        self.type_names: list[Optional[str]] = [t for t in sorted({t for t in gpu_type if t is not None})]
        tindex = {t: i for i, t in enumerate(self.type_names)}
        # Type index -1 means "no GPU model"; type masks are indexed with it shifted by one.
        self.gtype = np.array([tindex[t] if t is not None else -1 for t in gpu_type], dtype=np.int64)
        # A fresh stamp on every change of a node: score caches compare against it.
        self.version = fresh_stamps(n)
        # Per-node counts of GPU-workload kinds (used only by the gpu_clustering baseline).
        self.affinity: dict[str, np.ndarray] = {}
        # True when the runtime (Ray) picks the GPU of a shared request itself by the common rule
        # (``default_gpus``): policies may then choose the node but not the GPU.
        self.runtime_picks_shared_gpu = False

    @classmethod
    def from_snapshot(cls, snap: ClusterSnapshot) -> "ClusterArrays":
        """Array form of a public snapshot."""
        nodes = snap.nodes
        return cls(
            [n.node_id for n in nodes],
            [to_milli(n.cpu_free) for n in nodes],
            [n.mem_free for n in nodes],
            [n.gpu_type for n in nodes],
            [[to_milli(g) for g in n.gpu_free] for n in nodes],
        )

    def __len__(self) -> int:
        return len(self.node_ids)

    def copy(self) -> "ClusterArrays":
        """An independent copy (a gang is planned on a copy, so a failed gang leaves no trace)."""
        new = object.__new__(ClusterArrays)
        new.__dict__.update(self.__dict__)
        for name in ("cpu", "mem", "gpu", "version"):
            setattr(new, name, getattr(self, name).copy())
        new.affinity = {k: v.copy() for k, v in self.affinity.items()}
        return new

    def type_mask(self, types: Optional[frozenset[str]]) -> np.ndarray:
        """Boolean per node: may a request restricted to ``types`` use this node's GPUs."""
        if types is None:
            return np.ones(len(self), dtype=bool)
        allowed = np.array([False] + [t in types for t in self.type_names], dtype=bool)
        return allowed[self.gtype + 1]

    def feasible(self, req: Req, idx: Optional[np.ndarray] = None) -> np.ndarray:
        """Indices (of ``idx``, default all nodes) where ``req`` fits CPU, memory, type and GPUs."""
        if idx is None:
            idx = np.arange(len(self))
        ok = (self.cpu[idx] >= req.cpu) & (self.mem[idx] + 1e-9 >= req.mem)
        if req.num_gpu:
            ok &= self.type_mask(req.types)[idx]
            g = self.gpu[idx]
            if req.shared:
                ok &= (g >= req.milli).any(axis=1)
            else:
                ok &= (g >= req.milli).sum(axis=1) >= req.num_gpu
        return idx[ok]

    def default_gpus(self, node: int, req: Req) -> tuple[int, ...]:
        """GPU indices by the common rule: a shared request takes the tightest-fitting GPU (lowest
        index on ties), whole GPUs are the lowest-index GPUs with enough free capacity."""
        g = self.gpu[node, : self.gpu_count[node]]
        if req.num_gpu == 0:
            return ()
        if req.shared:
            fits = np.flatnonzero(g >= req.milli)
            return (int(fits[np.argmin(g[fits])]),)
        fits = np.flatnonzero(g >= req.milli)
        return tuple(int(i) for i in fits[: req.num_gpu])

    def commit(self, node: int, gpus: Sequence[int], req: Req) -> None:
        """Take ``req`` from ``node`` on GPUs ``gpus`` (the caller checked that it fits)."""
        self.cpu[node] -= req.cpu
        self.mem[node] -= req.mem
        for g in gpus:
            self.gpu[node, g] -= req.milli
        self.touch(node)
        if req.num_gpu:
            tag = "share" if req.shared else f"{req.num_gpu}-gpu"
            counts = self.affinity.setdefault(tag, np.zeros(len(self), dtype=np.int64))
            counts[node] += 1

    def touch(self, node: int) -> None:
        """Mark ``node`` changed (a fresh version stamp): cached scores of it are stale."""
        self.version[node] = next(_STAMPS)

    def adopt_versions(self, old: "ClusterArrays") -> int:
        """Take ``old``'s version stamps for the nodes whose state is the same here (free capacity,
        GPU model and count), so scores cached for ``old`` stay valid for them, and its per-node
        placement history (``affinity``: a rebuilt view has none). Only for the same nodes in
        the same order: returns how many nodes differ, or -1 if the node lists differ (nothing
        adopted)."""
        if (
            self.node_ids != old.node_ids
            or self.type_names != old.type_names
            or self.gpu.shape != old.gpu.shape
        ):
            return -1
        same = (
            (self.cpu == old.cpu)
            & (self.mem == old.mem)
            & (self.gtype == old.gtype)
            & (self.gpu_count == old.gpu_count)
            & (self.gpu == old.gpu).all(axis=1)
        )
        self.version[same] = old.version[same]
        self.affinity = {k: v.copy() for k, v in old.affinity.items()}
        # Share the node list itself: caches recognise "the same nodes" by its identity.
        self.node_ids, self.index = old.node_ids, old.index
        return int(len(self) - same.sum())

    def gpu_free_total(self, idx: Optional[np.ndarray] = None) -> np.ndarray:
        """Free milli-GPUs per node."""
        g = self.gpu if idx is None else self.gpu[idx]
        out: np.ndarray = g.sum(axis=1)
        return out
