"""The placement engine: feasibility, scoring by a policy, tie-breaking, gangs and strategies.

A policy only scores feasible nodes for one bundle (``Policy.score``); everything else — the checks
that keep a node from being over-allocated, the fixed tie-break order, all-or-nothing gangs and the
PACK/SPREAD/STRICT_* rules — lives here once, so every policy gets them the same way.

Two entry points share that code: ``Policy.place(snapshot, bundles)`` (pure, for the live scheduler)
and ``PlacementSession`` (the simulator's fast path, which keeps the arrays between decisions and
caches per-shape node scores, recomputing only the nodes that changed since).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .arrays import ClusterArrays, Req, node_priority
from .types import STRATEGIES, BundlePlacement, BundleRequest, ClusterSnapshot, NodeState

Choice = tuple[int, tuple[int, ...]]  # (node index, GPU indices)


class Policy:
    """Base of every placement policy.

    Subclasses implement ``score``. ``cacheable`` says a node's score depends only on that node's
    state and the request (so a session may cache it); ``model_version`` changes whenever the
    policy's own model changes (e.g. a new estimate of the request mix), invalidating caches.
    """

    name = "base"
    cacheable = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model_version = 0
        self._prio_cache: Optional[tuple[list, np.ndarray]] = None

    # -- to implement --------------------------------------------------------------------------
    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req
              ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Scores (higher is better) of the feasible nodes ``idx`` for ``req``, and for a shared
        GPU request optionally the GPU index to use on each (``None``: tightest fit)."""
        raise NotImplementedError

    def observe(self, bundle: BundleRequest) -> None:
        """Learn from a submitted request (default: nothing to learn)."""

    def finalize(self, scores: np.ndarray) -> np.ndarray:
        """Adjust the scores of all feasible nodes together before the pick (default: as is).
        Only here may one node's score depend on the others' (e.g. min-max normalisation)."""
        return scores

    # -- shared machinery ----------------------------------------------------------------------
    def priority(self, arr: ClusterArrays) -> np.ndarray:
        """The fixed tie-break rank of each node (cached per node set)."""
        # Copies of an array view share its node-id list, so identity is a cheap, safe cache key.
        cached = self._prio_cache
        if cached is None or cached[0] is not arr.node_ids:
            cached = self._prio_cache = (arr.node_ids, node_priority(arr.node_ids, self.seed))
        return cached[1]

    def choose(self, arr: ClusterArrays, req: Req, idx: Optional[np.ndarray] = None,
               prefer: Optional[np.ndarray] = None) -> Optional[Choice]:
        """Best node (and GPUs) for ``req`` among ``idx`` (default: all nodes), or ``None``.

        ``prefer`` (bool per node) ranks preferred nodes first whatever their score (PACK/SPREAD).
        """
        cand = arr.feasible(req, idx)
        if cand.size == 0:
            return None
        scores, gpus = self.score(arr, cand, req)
        return self._pick(arr, req, cand, scores, gpus, prefer)

    def _pick(self, arr: ClusterArrays, req: Req, cand: np.ndarray, scores: np.ndarray,
              gpus: Optional[np.ndarray], prefer: Optional[np.ndarray]) -> Choice:
        scores = self.finalize(np.asarray(scores, dtype=np.float64))
        if prefer is not None and prefer[cand].any():
            keep = prefer[cand]
            cand, scores = cand[keep], scores[keep]
            gpus = gpus[keep] if gpus is not None else None
        best = np.flatnonzero(scores == scores.max())
        j = best[np.argmin(self.priority(arr)[cand[best]])]
        node = int(cand[j])
        if gpus is not None and req.shared and gpus[j] >= 0:
            return node, (int(gpus[j]),)
        return node, arr.default_gpus(node, req)

    # -- public API ----------------------------------------------------------------------------
    def place(self, snapshot: ClusterSnapshot, bundles: Sequence[BundleRequest],
              strategy: str = "PACK") -> Optional[list[BundlePlacement]]:
        """Placements for all of ``bundles`` (a gang) or ``None`` if they cannot all be placed now.

        Pure: ``snapshot`` is not mutated. ``strategy`` is a Ray placement strategy.
        """
        arr = ClusterArrays.from_snapshot(snapshot)
        reqs = [Req.from_bundle(b) for b in bundles]
        choices = place_gang(self, arr, reqs, strategy)
        if choices is None:
            return None
        return [BundlePlacement(arr.node_ids[n], g, b.gpu_fraction if b.num_gpu else 0.0)
                for (n, g), b in zip(choices, bundles)]


def place_gang(policy: Policy, arr: ClusterArrays, reqs: Sequence[Req],
               strategy: str = "PACK") -> Optional[list[Choice]]:
    """All-or-nothing placement of ``reqs`` on a copy of ``arr`` (``arr`` itself is unchanged).

    PACK prefers nodes the gang already uses, SPREAD prefers unused ones, STRICT_SPREAD allows only
    unused ones and STRICT_PACK puts every bundle on one node. Bundles are placed biggest first (the
    hardest to fit decide where the gang can go) and returned in the caller's order.
    """
    strategy = strategy.upper()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if not reqs:
        return []
    if len(reqs) == 1:
        c = policy.choose(arr, reqs[0])
        return None if c is None else [c]
    order = sorted(range(len(reqs)), key=lambda i: (-reqs[i].gpu_milli_total, -reqs[i].cpu, i))
    if strategy == "STRICT_PACK":
        return _strict_pack(policy, arr, reqs, order)
    work = arr.copy()
    used = np.zeros(len(arr), dtype=bool)
    out: list[Optional[Choice]] = [None] * len(reqs)
    for i in order:
        if strategy == "STRICT_SPREAD":
            c = policy.choose(work, reqs[i], idx=np.flatnonzero(~used))
        elif strategy == "SPREAD":
            c = policy.choose(work, reqs[i], prefer=~used)
        else:
            c = policy.choose(work, reqs[i], prefer=used)
        if c is None:
            return None
        work.commit(c[0], c[1], reqs[i])
        used[c[0]] = True
        out[i] = c
    return out  # type: ignore[return-value]


def _strict_pack(policy: Policy, arr: ClusterArrays, reqs: Sequence[Req],
                 order: list[int]) -> Optional[list[Choice]]:
    # Candidate nodes: those where the largest bundle fits; then check the whole gang node by node,
    # in the order the policy would pick them for the largest bundle.
    cand = arr.feasible(reqs[order[0]])
    while cand.size:
        c = policy.choose(arr, reqs[order[0]], idx=cand)
        if c is None:
            return None
        node = c[0]
        work = arr.copy()
        out: list[Optional[Choice]] = [None] * len(reqs)
        for i in order:
            ci = policy.choose(work, reqs[i], idx=np.array([node]))
            if ci is None:
                break
            work.commit(ci[0], ci[1], reqs[i])
            out[i] = ci
        else:
            return out  # type: ignore[return-value]
        cand = cand[cand != node]
    return None


class PlacementSession:
    """A policy bound to a mutable cluster: place one request, commit, repeat (the simulator).

    Scores of cacheable policies are cached per request shape and recomputed only for nodes whose
    state changed since (or all of them when the policy's model changed), which gives the same
    decisions as scoring from scratch, much faster.
    """

    def __init__(self, policy: Policy, arr: ClusterArrays) -> None:
        self.policy = policy
        self.arr = arr
        self._cache: dict[tuple, tuple] = {}
        self._model = policy.model_version

    def place(self, req: Req) -> Optional[Choice]:
        """Where ``req`` would go now (nothing is committed)."""
        p, arr = self.policy, self.arr
        if not p.cacheable:
            return p.choose(arr, req)
        if p.model_version != self._model:
            self._cache.clear()
            self._model = p.model_version
        ent = self._cache.get(req.key)
        n = len(arr)
        if ent is None:
            ent = (np.full(n, -np.inf), np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
            self._cache[req.key] = ent
            stale = np.arange(n)
        else:
            stale = np.flatnonzero(ent[2] != arr.version)
        scores, gpus, seen = ent
        if stale.size:
            seen[stale] = arr.version[stale]
            scores[stale] = -np.inf
            cand = arr.feasible(req, stale)
            if cand.size:
                s, g = p.score(arr, cand, req)
                scores[cand] = s
                gpus[cand] = g if g is not None else -1
        ok = np.flatnonzero(scores > -np.inf)
        if ok.size == 0:
            return None
        return p._pick(arr, req, ok, scores[ok], gpus[ok], None)

    def commit(self, choice: Choice, req: Req) -> None:
        """Take ``req`` from the chosen node."""
        self.arr.commit(choice[0], choice[1], req)

    def place_gang(self, reqs: Sequence[Req], strategy: str = "PACK") -> Optional[list[Choice]]:
        """Gang placement on the session's cluster (not committed)."""
        if len(reqs) == 1:
            c = self.place(reqs[0])
            return None if c is None else [c]
        return place_gang(self.policy, self.arr, reqs, strategy)

    # -- the same with public types: one scheduling cycle over many workloads ------------------
    @classmethod
    def from_snapshot(cls, policy: Policy, snapshot: ClusterSnapshot) -> "PlacementSession":
        """A session on a copy of ``snapshot`` (which is not modified): place and commit many
        workloads in one cycle without re-reading the snapshot or re-scoring unchanged nodes."""
        session = cls(policy, ClusterArrays.from_snapshot(snapshot))
        session._labels = {n.node_id: n.labels for n in snapshot.nodes}
        return session

    def place_bundles(self, bundles: Sequence[BundleRequest], strategy: str = "PACK"
                      ) -> Optional[list[BundlePlacement]]:
        """Like ``Policy.place`` on the session's current state (nothing is committed)."""
        choices = self.place_gang([Req.from_bundle(b) for b in bundles], strategy)
        if choices is None:
            return None
        return [BundlePlacement(self.arr.node_ids[n], g, b.gpu_fraction if b.num_gpu else 0.0)
                for (n, g), b in zip(choices, bundles)]

    def commit_bundles(self, placements: Sequence[BundlePlacement],
                       bundles: Sequence[BundleRequest]) -> None:
        """Take ``bundles`` from the nodes ``placements`` name; ``ValueError`` (and no change at
        all) if any of them does not fit."""
        if len(placements) != len(bundles):
            raise ValueError("one placement per bundle")
        work = self.arr.copy()
        for p, b in zip(placements, bundles):
            if p.node_id not in work.index:
                raise ValueError(f"unknown node {p.node_id!r}")
            node, req = work.index[p.node_id], Req.from_bundle(b)
            gpus = list(p.gpu_indices)
            if (len(set(gpus)) != req.num_gpu or work.feasible(req, np.array([node])).size == 0
                    or any(not 0 <= g < work.gpu_count[node] or work.gpu[node, g] < req.milli
                           for g in gpus)):
                raise ValueError(f"bundle does not fit node {p.node_id!r} on GPUs {gpus}")
            work.commit(node, gpus, req)
        self.arr = work

    def snapshot(self) -> ClusterSnapshot:
        """The session's current state as a public snapshot."""
        a, labels = self.arr, getattr(self, "_labels", {})
        gtype = [a.type_names[t] if t >= 0 else None for t in a.gtype]
        return ClusterSnapshot(tuple(
            NodeState(nid, float(a.cpu[i]) / 1000.0, float(a.mem[i]), gtype[i],
                      tuple(float(g) / 1000.0 for g in a.gpu[i, :a.gpu_count[i]]),
                      labels.get(nid, {}))
            for i, nid in enumerate(a.node_ids)))
