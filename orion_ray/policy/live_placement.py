"""The placement engine applied to a live cluster: Ray's node view plus Orion's own reservations.

Pure. A ``LivePlacer`` is built from the nodes the runtime reports (totals and labels) and every bundle
Orion holds (``Held``); it says where each gang would go, and commits what is admitted, so later gangs
see the capacity the earlier ones took. The scheduler keeps one across cycles (``cycle.CyclePlanner``):
its copies share one score cache, so unchanged nodes are not scored again.

Per-GPU state is Orion's model of what Ray did. Ray picks the GPU of a shared (fractional) bundle
itself — the tightest GPU that fits — so the placer scores only that option (the engine's
``runtime_picks_shared_gpu``), and the scheduler corrects a held bundle's GPU index with what Ray
reports once the group exists (``Held.observed``). Which *whole* GPUs a bundle got does not change
the free-capacity multiset, so whole-GPU bundles are counted against fully free GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from .fit import ACCELERATOR_LABEL, NodeView, could_ever_fit, fit_gang
from .markets import spot_node_ids
from .placement import BundleRequest, ClusterArrays, ClusterSnapshot, NodeState, Policy, Req, place_gang
from .placement.arrays import MILLI, to_milli
from .placement.engine import ScoreCache

STANDARD = ("CPU", "GPU", "memory")
Bundle = Mapping[str, float]


@dataclass(frozen=True)
class Held:
    """One bundle Orion holds (reserved or running): where, what, and on which GPUs."""

    node_id: str
    bundle: Mapping[str, float]
    gpu_indices: tuple[int, ...] = ()
    observed: bool = False  # the GPU index is what Ray reported, not only what Orion expected

    @property
    def shared_gpu(self) -> bool:
        """Whether the bundle takes a fraction of one GPU."""
        return 0 < self.bundle.get("GPU", 0.0) < 1

    @cached_property
    def req(self) -> Req:
        """The bundle in the engine's units (computed once: what-ifs release bundles often)."""
        return Req.from_bundle(bundle_request(self.bundle))


def bundle_request(bundle: Bundle, gpu_type: Optional[str] = None) -> BundleRequest:
    """The engine's request for a Ray bundle (``{"CPU": 2, "GPU": 0.5, "memory": ...}``)."""
    gpu = float(bundle.get("GPU", 0.0))
    if gpu <= 0:
        num, frac = 0, 1.0
    elif gpu < 1:
        num, frac = 1, gpu
    else:
        num, frac = int(round(gpu)), 1.0
    return BundleRequest(
        cpu=float(bundle.get("CPU", 0.0)),
        mem=float(bundle.get("memory", 0.0)),
        num_gpu=num,
        gpu_fraction=frac,
        gpu_types=frozenset([gpu_type]) if gpu_type and num else None,
    )


def outside_orion(
    nodes: Sequence[NodeView],
    held: Iterable[Held],
    claims: Optional[Mapping[str, Mapping[str, float]]] = None,
) -> list[Held]:
    """What others hold on each node (Serve replicas, plain Ray work): total minus what Ray reports
    free minus what Orion holds, as held bundles so that one GPU account covers them all.

    A group Orion just asked for and Ray has not reserved yet would make this negative: it is
    clamped at zero. A group Orion just released may still count for a moment: a conservative error.
    GPUs are split into whole GPUs and a shared remainder (its device unknown: Ray's rule).
    ``claims`` (node → resources) is capacity promised to such work that may not show as used yet
    (a Serve replica Orion made room for): a node holds the larger of the two.
    """
    mine: dict[str, dict[str, float]] = {}
    for h in held:
        m = mine.setdefault(h.node_id, {})
        for k, v in h.bundle.items():
            m[k] = m.get(k, 0.0) + v
    out: list[Held] = []
    for n in nodes:
        claim = (claims or {}).get(n.node_id, {})
        if n.available is None and not claim:
            continue
        m = mine.get(n.node_id, {})
        avail = n.available if n.available is not None else n.total
        used = {
            k: max(n.total.get(k, 0.0) - avail.get(k, 0.0) - m.get(k, 0.0), claim.get(k, 0.0))
            for k in STANDARD
        }
        cpu, mem, gpu = (max(0.0, used[k]) for k in ("CPU", "memory", "GPU"))
        gpu = round(gpu, 4)
        if cpu < 1e-6 and mem < 1e-6 and gpu < 1e-6:
            continue
        whole, part = int(gpu), round(gpu - int(gpu), 4)
        first = {"CPU": cpu, "memory": mem}
        if whole:
            first["GPU"] = float(whole)
        out.append(Held(n.node_id, {k: v for k, v in first.items() if v > 1e-6}))
        if part > 1e-6:
            out.append(Held(n.node_id, {"GPU": part}))
    return out


def requests(bundles: Sequence[Bundle], gpu_types: Sequence[Optional[str]]) -> Optional[list[Req]]:
    """The engine's requests for a gang's bundles, or ``None`` when a bundle asks for a custom
    resource the engine does not model (``LivePlacer.place`` then uses the simple fit)."""
    if any(k not in STANDARD for b in bundles for k in b):
        return None
    return [Req.from_bundle(bundle_request(b, t)) for b, t in zip(bundles, gpu_types)]


class _FirstFit(Policy):
    """Every feasible node scores the same: enough to ask "does it fit at all?"."""

    name = "first_fit"

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        return np.zeros(len(idx)), None


_FIRST_FIT = _FirstFit()


def gpu_state(gpu_count: int, held: Iterable[Held]) -> list[int]:
    """Free milli-GPUs of each GPU of a node holding ``held``: shared bundles at their index, whole
    bundles on the fully free GPUs (lowest first; the most free if the model is ever short)."""
    free = [MILLI] * gpu_count
    whole = 0
    for h in held:
        gpu = h.bundle.get("GPU", 0.0)
        if not gpu:
            continue
        if h.shared_gpu and h.gpu_indices and h.gpu_indices[0] < gpu_count:
            free[h.gpu_indices[0]] -= to_milli(gpu)
        elif h.shared_gpu:
            # index not known (yet): the tightest GPU that fits, which is what Ray picks
            fits = [i for i in range(gpu_count) if free[i] >= to_milli(gpu)]
            if fits:
                i = min(fits, key=lambda i: (free[i], i))
                free[i] -= to_milli(gpu)
        else:
            whole += int(round(gpu))
    for _ in range(whole):
        if not gpu_count:
            break
        i = max(range(gpu_count), key=lambda i: (free[i], -i))
        free[i] = max(0, free[i] - MILLI)
    return [max(0, f) for f in free]


class LivePlacer:
    """Where gangs go on the live cluster this cycle (one per cycle; ``commit`` what is admitted)."""

    def __init__(self, policy: Policy, nodes: Sequence[NodeView], held: Iterable[Held] = ()) -> None:
        self.policy = policy
        by_node: dict[str, list[Held]] = {}
        for h in held:
            by_node.setdefault(h.node_id, []).append(h)
        self.nodes = [n for n in nodes if n.schedulable]
        self.spot_nodes = spot_node_ids(self.nodes)  # cost-aware placement (policy/markets.py)
        # Free custom resources (the engine models CPU, memory and GPUs; the rest is kept here,
        # only for the nodes that have any, so copies stay cheap).
        self.custom_free: dict[str, dict[str, float]] = {
            n.node_id: {k: v for k, v in n.free.items() if k not in STANDARD}
            for n in self.nodes
            if any(k not in STANDARD for k in n.total)
        }
        self.gpu_count = {n.node_id: int(n.total.get("GPU", 0.0) + 1e-9) for n in self.nodes}
        self.arr = ClusterArrays(
            [n.node_id for n in self.nodes],
            [to_milli(max(0.0, n.free.get("CPU", 0.0))) for n in self.nodes],
            [max(0.0, n.free.get("memory", 0.0)) for n in self.nodes],
            [n.labels.get(ACCELERATOR_LABEL) if self.gpu_count[n.node_id] else None for n in self.nodes],
            [gpu_state(self.gpu_count[n.node_id], by_node.get(n.node_id, ())) for n in self.nodes],
        )
        self.arr.runtime_picks_shared_gpu = True
        # Shared by every copy (what-ifs, the next cycle's state): node stamps keep it right.
        self.cache = ScoreCache()
        # The nodes' total capacity as arrays, built on first use and shared by every copy
        self._totals: list[Optional[ClusterArrays]] = [None]

    def snapshot(self) -> ClusterSnapshot:
        """The engine's view of the cluster now (free CPU, memory and per-GPU fractions)."""
        a = self.arr
        return ClusterSnapshot(
            tuple(
                NodeState(
                    nid,
                    a.cpu[i] / MILLI,
                    float(a.mem[i]),
                    a.type_names[a.gtype[i]] if a.gtype[i] >= 0 else None,
                    tuple(float(g) / MILLI for g in a.gpu[i, : a.gpu_count[i]]),
                )
                for i, nid in enumerate(a.node_ids)
            )
        )

    def place(
        self,
        bundles: Sequence[Bundle],
        gpu_types: Sequence[Optional[str]],
        strategy: str,
        reqs: Optional[Sequence[Req]] = None,
    ) -> Optional[list[Held]]:
        """Where each bundle would go now (nothing is committed), or ``None`` if the gang does not
        fit. Bundles with custom resources, which the engine does not model, use the simple fit.
        ``reqs`` (``requests(bundles, gpu_types)``, which a caller placing the same shape often
        may keep) saves converting the bundles again."""
        if reqs is None:
            reqs = requests(bundles, gpu_types)
        if reqs is None:
            chosen = fit_gang(bundles, strategy, self._free_views(), gpu_types)
            if chosen is None:
                return None
            return [Held(n, dict(b), self._whole_gpus(n, b)) for n, b in zip(chosen, bundles)]
        # Every bundle, gangs included, is scored from the cache: only the nodes that changed since
        # a shape was last placed are scored again.
        choices = place_gang(self.policy, self.arr, reqs, strategy, self.cache)
        if choices is None:
            return None
        out = []
        for (n, g), b, r in zip(choices, bundles, reqs):
            h = Held(self.arr.node_ids[n], dict(b), tuple(g))
            # what ``Held.req`` would compute (the request without its GPU-type constraint)
            h.__dict__["req"] = Req(r.cpu, r.mem, r.num_gpu, r.milli, None)
            out.append(h)
        return out

    def commit(self, placed: Sequence[Held]) -> None:
        """Take ``placed`` from the free capacity (and from the custom-resource view)."""
        for h in placed:
            i = self.arr.index[h.node_id]
            req = h.req
            gpus = h.gpu_indices or self.arr.default_gpus(i, req)
            self.arr.commit(i, gpus, req)
            self._take_custom(h, -1.0)

    def release(self, held: Sequence[Held]) -> None:
        """Give ``held`` back (a what-if: a victim or a finished run frees its bundles)."""
        for h in held:
            i = self.arr.index.get(h.node_id)
            if i is None:
                continue  # the node is gone (or cordoned): nothing to give back here
            req = h.req
            gpus = h.gpu_indices or self._used_gpus(i, req)
            self.arr.cpu[i] += req.cpu
            self.arr.mem[i] += req.mem
            for g in gpus:
                self.arr.gpu[i, g] = min(MILLI, self.arr.gpu[i, g] + req.milli)
            self.arr.touch(i)
            self._take_custom(h, 1.0)

    def copy(self) -> "LivePlacer":
        """An independent copy for what-if planning (preemption, reservations, forecasts)."""
        new = object.__new__(LivePlacer)
        new.__dict__.update(self.__dict__)
        new.arr = self.arr.copy()
        new.custom_free = {k: dict(v) for k, v in self.custom_free.items()}
        return new

    def _take_custom(self, h: Held, sign: float) -> None:
        custom = self.custom_free.get(h.node_id)
        if custom is None:
            return
        for k, v in h.bundle.items():
            if k not in STANDARD:
                custom[k] = custom.get(k, 0.0) + sign * v

    def fits_node(self, i: int, req: Req, cpu: float, mem: float, gpu: np.ndarray) -> bool:
        """Whether ``req`` fits a node state (``cpu`` milli, ``mem``, per-GPU milli ``gpu``)
        of node ``i`` (its GPU type included): a cheap check for what-if loops."""
        if cpu < req.cpu or mem + 1e-9 < req.mem:
            return False
        if not req.num_gpu:
            return True
        if not self.arr.type_mask(req.types)[i]:
            return False
        if req.shared:
            return bool((gpu >= req.milli).any())
        return int((gpu >= req.milli).sum()) >= req.num_gpu

    def masked(self, node_ids: Iterable[str]) -> "LivePlacer":
        """A copy in which ``node_ids`` take nothing (capacity reserved for someone else)."""
        new = self.copy()
        for nid in node_ids:
            i = new.arr.index.get(nid)
            if i is not None:
                new.arr.cpu[i] = -1  # below any request: the node is infeasible for everything
                new.arr.touch(i)
        return new

    def _used_gpus(self, i: int, req: Req) -> tuple[int, ...]:
        g = self.arr.gpu[i, : self.arr.gpu_count[i]]
        if not req.num_gpu:
            return ()
        room = [j for j in range(len(g)) if g[j] + req.milli <= MILLI]
        room.sort(key=lambda j: (g[j], j))  # the most used first: that is where it was taken
        return tuple(room[: req.num_gpu])

    def could_ever_fit(
        self, bundles: Sequence[Bundle], gpu_types: Sequence[Optional[str]], strategy: str
    ) -> bool:
        """Whether the gang fits the schedulable nodes' total capacity."""
        if any(k not in STANDARD for b in bundles for k in b):
            return could_ever_fit(bundles, strategy, self.nodes, gpu_types)
        totals = self._totals[0]
        if totals is None:
            totals = self._totals[0] = ClusterArrays(
                [n.node_id for n in self.nodes],
                [to_milli(n.total.get("CPU", 0.0)) for n in self.nodes],
                [n.total.get("memory", 0.0) for n in self.nodes],
                [self.arr.type_names[t] if t >= 0 else None for t in self.arr.gtype],
                [[MILLI] * self.gpu_count[n.node_id] for n in self.nodes],
            )
        reqs = [Req.from_bundle(bundle_request(b, t)) for b, t in zip(bundles, gpu_types)]
        return place_gang(_FIRST_FIT, totals, reqs, strategy) is not None

    def _free_views(self) -> list[NodeView]:
        out = []
        for n in self.nodes:
            i = self.arr.index[n.node_id]
            free = {
                "CPU": self.arr.cpu[i] / MILLI,
                "memory": float(self.arr.mem[i]),
                "GPU": float(self.arr.gpu[i].sum()) / MILLI,
                **self.custom_free.get(n.node_id, {}),
            }
            out.append(NodeView(n.node_id, free, n.total, n.labels))
        return out

    def _whole_gpus(self, node_id: str, bundle: Bundle) -> tuple[int, ...]:
        req = Req.from_bundle(bundle_request(bundle))
        return self.arr.default_gpus(self.arr.index[node_id], req)


def placement_record(held: list[Held]) -> list[dict[str, Any]]:
    """The ``placement`` field of a running workload: node and GPU indices of each bundle."""
    return [
        {
            "bundle": i,
            "node_id": h.node_id,
            "gpu_indices": list(h.gpu_indices),
            "gpu_indices_observed": h.observed,
        }
        for i, h in enumerate(held)
    ]


def held_from_record(placement: Optional[list[Any]], bundles: list[dict[str, float]]) -> list[Held]:
    """Rebuild the held bundles of a recovered workload from its stored ``placement``."""
    out = []
    for rec, bundle in zip(placement or [], bundles):
        out.append(
            Held(
                rec["node_id"],
                bundle,
                tuple(rec.get("gpu_indices") or ()),
                bool(rec.get("gpu_indices_observed")),
            )
        )
    return out


def stranded_gpus(snapshot: ClusterSnapshot, policy: Policy) -> list[dict[str, Any]]:
    """Fragmentation now, per node: free GPU capacity, and the part of it the policy's expected
    request mix could not use (the FGD measure), in GPUs. Nodes without GPUs are left out."""
    from .placement.frag import TypicalPods, frag_amount

    arr = ClusterArrays.from_snapshot(snapshot)
    tp = getattr(policy, "_tp", None) or TypicalPods.from_counts({})
    stranded = frag_amount(tp, tp.typeok(arr), arr.cpu, arr.gpu, arr.gtype)
    out = []
    for i, n in enumerate(snapshot.nodes):
        if not n.gpu_free:
            continue
        out.append(
            {
                "node_id": n.node_id,
                "gpu_type": n.gpu_type,
                "gpus": len(n.gpu_free),
                "gpu_free": [round(g, 3) for g in n.gpu_free],
                "free_gpus": round(sum(n.gpu_free), 3),
                "stranded_gpus": round(float(stranded[i]) / MILLI, 3),
                "partly_used_gpus": sum(1 for g in n.gpu_free if 0 < g < 1),
            }
        )
    return out


def fragmentation_summary(per_node: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals by GPU type of ``stranded_gpus`` rows (what the queue view and the metric show)."""
    by_type: dict[str, dict[str, Any]] = {}
    for r in per_node:
        t = by_type.setdefault(
            r["gpu_type"] or "unknown", {"gpus": 0, "free_gpus": 0.0, "stranded_gpus": 0.0}
        )
        t["gpus"] += r["gpus"]
        t["free_gpus"] = round(t["free_gpus"] + r["free_gpus"], 3)
        t["stranded_gpus"] = round(t["stranded_gpus"] + r["stranded_gpus"], 3)
    total_free = sum(t["free_gpus"] for t in by_type.values())
    total_stranded = sum(t["stranded_gpus"] for t in by_type.values())
    return {
        "by_gpu_type": by_type,
        "free_gpus": round(total_free, 3),
        "stranded_gpus": round(total_stranded, 3),
        "stranded_pct_of_free": round(100 * total_stranded / total_free, 2) if total_free else 0.0,
    }
