"""The placement engine: feasibility, scoring by a policy, tie-breaking, gangs and strategies.

A policy only scores feasible nodes for one bundle (``Policy.score``); everything else — the checks
that keep a node from being over-allocated, the fixed tie-break order, all-or-nothing gangs and the
PACK/SPREAD/STRICT_* rules — lives here once, so every policy gets them the same way.

Two entry points share that code: ``Policy.place(snapshot, bundles)`` (pure, for the live scheduler)
and ``PlacementSession`` (the simulator's fast path, which keeps the arrays between decisions and
caches per-shape node scores, recomputing only the nodes that changed since).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

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
        self._prio_cache: Optional[tuple[list[Any], np.ndarray]] = None

    # -- to implement --------------------------------------------------------------------------
    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
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

    def choose(
        self,
        arr: ClusterArrays,
        req: Req,
        idx: Optional[np.ndarray] = None,
        prefer: Optional[np.ndarray] = None,
    ) -> Optional[Choice]:
        """Best node (and GPUs) for ``req`` among ``idx`` (default: all nodes), or ``None``.

        ``prefer`` (bool per node) ranks preferred nodes first whatever their score (PACK/SPREAD).
        """
        cand = arr.feasible(req, idx)
        if cand.size == 0:
            return None
        scores, gpus = self.score(arr, cand, req)
        return self._pick(arr, req, cand, scores, gpus, prefer)

    def _pick(
        self,
        arr: ClusterArrays,
        req: Req,
        cand: np.ndarray,
        scores: np.ndarray,
        gpus: Optional[np.ndarray],
        prefer: Optional[np.ndarray],
    ) -> Choice:
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
    def place(
        self, snapshot: ClusterSnapshot, bundles: Sequence[BundleRequest], strategy: str = "PACK"
    ) -> Optional[list[BundlePlacement]]:
        """Placements for all of ``bundles`` (a gang) or ``None`` if they cannot all be placed now.

        Pure: ``snapshot`` is not mutated. ``strategy`` is a Ray placement strategy.
        """
        arr = ClusterArrays.from_snapshot(snapshot)
        reqs = [Req.from_bundle(b) for b in bundles]
        choices = place_gang(self, arr, reqs, strategy)
        if choices is None:
            return None
        return [
            BundlePlacement(arr.node_ids[n], g, b.gpu_fraction if b.num_gpu else 0.0)
            for (n, g), b in zip(choices, bundles)
        ]


class ScoreCache:
    """Scores of a cacheable policy per request shape and node, kept while the node keeps its
    version stamp (``ClusterArrays.touch``).

    Stamps name node states process-wide, so one cache serves an array and all its copies: the
    next cycle's state, a gang's scratch copy, a what-if with victims released. Everything is
    dropped when the policy's model, the node list or the runtime's shared-GPU rule changes.
    """

    MAX_SHAPES = 1024  # a long-lived cache forgets everything past this many shapes (~3 arrays each)

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # What the entries hold for, by identity (the objects are kept so an id is never reused)
        self._policy: Optional[Policy] = None
        self._nodes: Optional[list[str]] = None
        self._model: tuple[int, bool] = (-1, False)

    def clear(self) -> None:
        """Forget every cached score."""
        self._entries.clear()
        self._policy = self._nodes = None

    def scores(self, policy: "Policy", arr: ClusterArrays, req: Req) -> tuple[np.ndarray, np.ndarray]:
        """Score of ``req`` on every node of ``arr`` (``-inf`` where it does not fit) and the GPU
        the policy picked for a shared request (``-1``: the common rule). Only nodes whose stamp
        changed since they were last scored for this shape are scored again. The arrays are the
        cache's own: read them, do not keep or change them."""
        model = (policy.model_version, arr.runtime_picks_shared_gpu)
        if (
            policy is not self._policy
            or arr.node_ids is not self._nodes
            or model != self._model
            or len(self._entries) > self.MAX_SHAPES
        ):
            self._entries.clear()
            self._policy, self._nodes, self._model = policy, arr.node_ids, model
        n = len(arr)
        ent = self._entries.get(req.key)
        if ent is None:
            ent = (np.full(n, -np.inf), np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
            self._entries[req.key] = ent
            stale = np.arange(n)
        else:
            stale = np.flatnonzero(ent[2] != arr.version)
        scores, gpus, seen = ent
        if stale.size:
            seen[stale] = arr.version[stale]
            scores[stale] = -np.inf
            cand = arr.feasible(req, stale)
            if cand.size:
                s, g = policy.score(arr, cand, req)
                scores[cand] = s
                gpus[cand] = g if g is not None else -1
        return scores, gpus


def choose(
    policy: Policy,
    cache: Optional[ScoreCache],
    arr: ClusterArrays,
    req: Req,
    idx: Optional[np.ndarray] = None,
    prefer: Optional[np.ndarray] = None,
) -> Optional[Choice]:
    """``policy.choose`` through ``cache`` (when given and the policy is cacheable): the same
    choice, from cached scores of the unchanged nodes."""
    if cache is None or not policy.cacheable:
        return policy.choose(arr, req, idx, prefer)
    scores, gpus = cache.scores(policy, arr, req)
    # In ``idx``'s order, as ``ClusterArrays.feasible`` keeps it: the pick sees the same list.
    ok = np.flatnonzero(scores > -np.inf) if idx is None else idx[scores[idx] > -np.inf]
    if ok.size == 0:
        return None
    return policy._pick(arr, req, ok, scores[ok], gpus[ok], prefer)


def place_gang(
    policy: Policy,
    arr: ClusterArrays,
    reqs: Sequence[Req],
    strategy: str = "PACK",
    cache: Optional[ScoreCache] = None,
) -> Optional[list[Choice]]:
    """All-or-nothing placement of ``reqs`` on a copy of ``arr`` (``arr`` itself is unchanged).

    PACK prefers nodes the gang already uses, SPREAD prefers unused ones, STRICT_SPREAD allows only
    unused ones and STRICT_PACK puts every bundle on one node. Bundles are placed biggest first (the
    hardest to fit decide where the gang can go) and returned in the caller's order. With a
    ``cache`` every bundle is scored from it: on the gang's scratch copy only the nodes the gang
    took so far are scored again.
    """
    strategy = strategy.upper()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if not reqs:
        return []
    if len(reqs) == 1:
        c = choose(policy, cache, arr, reqs[0])
        return None if c is None else [c]
    order = sorted(range(len(reqs)), key=lambda i: (-reqs[i].gpu_milli_total, -reqs[i].cpu, i))
    if strategy == "STRICT_PACK":
        return _strict_pack(policy, cache, arr, reqs, order)
    work = arr.copy()
    used = np.zeros(len(arr), dtype=bool)
    at: dict[int, Choice] = {}
    for i in order:
        if strategy == "STRICT_SPREAD":
            c = choose(policy, cache, work, reqs[i], idx=np.flatnonzero(~used))
        elif strategy == "SPREAD":
            c = choose(policy, cache, work, reqs[i], prefer=~used)
        else:
            c = choose(policy, cache, work, reqs[i], prefer=used)
        if c is None:
            return None
        work.commit(c[0], c[1], reqs[i])
        used[c[0]] = True
        at[i] = c
    return [at[i] for i in range(len(reqs))]


def _strict_pack(
    policy: Policy, cache: Optional[ScoreCache], arr: ClusterArrays, reqs: Sequence[Req], order: list[int]
) -> Optional[list[Choice]]:
    # Candidate nodes: those where the largest bundle fits; then check the whole gang node by node,
    # in the order the policy would pick them for the largest bundle.
    cand = arr.feasible(reqs[order[0]])
    while cand.size:
        c = choose(policy, cache, arr, reqs[order[0]], idx=cand)
        if c is None:
            return None
        node = c[0]
        work = arr.copy()
        at: dict[int, Choice] = {}
        for i in order:
            ci = choose(policy, cache, work, reqs[i], idx=np.array([node]))
            if ci is None:
                break
            work.commit(ci[0], ci[1], reqs[i])
            at[i] = ci
        else:
            return [at[i] for i in range(len(reqs))]
        cand = cand[cand != node]
    return None


class PlacementSession:
    """A policy bound to a mutable cluster: place one request, commit, repeat (the simulator).

    Scores of cacheable policies are cached per request shape and recomputed only for nodes whose
    state changed since (or all of them when the policy's model changed), which gives the same
    decisions as scoring from scratch, much faster.
    """

    def __init__(self, policy: Policy, arr: ClusterArrays, cache: Optional[ScoreCache] = None) -> None:
        self.policy = policy
        self.arr = arr
        self.cache = cache if cache is not None else ScoreCache()
        self._labels: dict[str, dict[str, str]] = {}  # node labels (from_snapshot), for snapshot

    def place(self, req: Req) -> Optional[Choice]:
        """Where ``req`` would go now (nothing is committed)."""
        return choose(self.policy, self.cache, self.arr, req)

    def commit(self, choice: Choice, req: Req) -> None:
        """Take ``req`` from the chosen node."""
        self.arr.commit(choice[0], choice[1], req)

    def place_gang(self, reqs: Sequence[Req], strategy: str = "PACK") -> Optional[list[Choice]]:
        """Gang placement on the session's cluster (not committed)."""
        if len(reqs) == 1:
            c = self.place(reqs[0])
            return None if c is None else [c]
        return place_gang(self.policy, self.arr, reqs, strategy, self.cache)

    # -- the same with public types: one scheduling cycle over many workloads ------------------
    @classmethod
    def from_snapshot(cls, policy: Policy, snapshot: ClusterSnapshot) -> "PlacementSession":
        """A session on a copy of ``snapshot`` (which is not modified): place and commit many
        workloads in one cycle without re-reading the snapshot or re-scoring unchanged nodes."""
        session = cls(policy, ClusterArrays.from_snapshot(snapshot))
        session._labels = {n.node_id: n.labels for n in snapshot.nodes}
        return session

    def place_bundles(
        self, bundles: Sequence[BundleRequest], strategy: str = "PACK"
    ) -> Optional[list[BundlePlacement]]:
        """Like ``Policy.place`` on the session's current state (nothing is committed)."""
        choices = self.place_gang([Req.from_bundle(b) for b in bundles], strategy)
        if choices is None:
            return None
        return [
            BundlePlacement(self.arr.node_ids[n], g, b.gpu_fraction if b.num_gpu else 0.0)
            for (n, g), b in zip(choices, bundles)
        ]

    def commit_bundles(self, placements: Sequence[BundlePlacement], bundles: Sequence[BundleRequest]) -> None:
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
            if (
                len(set(gpus)) != req.num_gpu
                or work.feasible(req, np.array([node])).size == 0
                or any(not 0 <= g < work.gpu_count[node] or work.gpu[node, g] < req.milli for g in gpus)
            ):
                raise ValueError(f"bundle does not fit node {p.node_id!r} on GPUs {gpus}")
            work.commit(node, gpus, req)
        self.arr = work

    def snapshot(self) -> ClusterSnapshot:
        """The session's current state as a public snapshot."""
        a, labels = self.arr, getattr(self, "_labels", {})
        gtype = [a.type_names[t] if t >= 0 else None for t in a.gtype]
        return ClusterSnapshot(
            tuple(
                NodeState(
                    nid,
                    float(a.cpu[i]) / 1000.0,
                    float(a.mem[i]),
                    gtype[i],
                    tuple(float(g) / 1000.0 for g in a.gpu[i, : a.gpu_count[i]]),
                    labels.get(nid, {}),
                )
                for i, nid in enumerate(a.node_ids)
            )
        )
