"""Orion's Serve request routers: round robin, least connections, weighted by replica rank and
prompt-prefix affinity, each a ``ray.serve.request_router.RequestRouter`` whose choice is a pure
function of ``orion_ray.policy.balancing``. A deployment names one through its ``load_balancing``
block (``router_config.balancing_config``), and Serve runs it wherever a handle or the proxy routes
to that deployment.

``ray.serve.llm``'s ``PrefixCacheAffinityRouter`` is not used: it reads vLLM's request objects
(``.prompt`` / ``.messages`` attributes) and needs ``ray[llm]`` (vLLM, pyarrow) and a prefix-tree
actor, while Orion's replicas are called ``complete(kind, body)`` with a plain dict.
"""

from __future__ import annotations

import importlib
import random
from typing import Any, List, Optional

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

from ..errors import ValidationError
from ..policy import balancing


class _OrionRouter(FIFOMixin, RequestRouter):
    """Shared plumbing: replicas by id, a turn counter, and backing off when every rank is full."""

    _turn = 0

    def _by_id(self, candidates: List[RunningReplica]) -> dict[str, RunningReplica]:
        return {r.replica_id.unique_id: r for r in candidates}

    def _queue_lens(self, by_id: dict[str, RunningReplica]) -> dict[str, Optional[int]]:
        cache = self.replica_queue_len_cache
        return {rid: cache.get(r.replica_id) for rid, r in by_id.items()}

    def _next_turn(self) -> int:
        self._turn += 1
        return self._turn - 1

    def _ranks(self, by_id: dict[str, RunningReplica], ranks: list[list[str]], pending) -> list:
        if pending is not None:  # every rank tried and full: Serve backs off before the next round
            pending.routing_context.should_backoff = True
        return [[by_id[rid] for rid in rank if rid in by_id] for rank in ranks]


class RoundRobinRouter(_OrionRouter):
    """Each replica in turn (sorted by id); a full replica passes its turn to the next."""

    async def choose_replicas(
        self, candidate_replicas: List[RunningReplica], pending_request: Optional[PendingRequest] = None
    ) -> List[List[RunningReplica]]:
        by_id = self._by_id(candidate_replicas)
        return self._ranks(by_id, balancing.round_robin(list(by_id), self._next_turn()), pending_request)


class LeastConnectionsRouter(_OrionRouter):
    """The replica with the fewest requests in flight (Serve's queue-length cache and probes)."""

    async def choose_replicas(
        self, candidate_replicas: List[RunningReplica], pending_request: Optional[PendingRequest] = None
    ) -> List[List[RunningReplica]]:
        by_id = self._by_id(candidate_replicas)
        ranks = balancing.least_connections(self._queue_lens(by_id), self._next_turn())
        return self._ranks(by_id, ranks, pending_request)


class WeightedRouter(_OrionRouter):
    """Replica rank ``i`` takes ``weights[i]`` of the requests (a replica reports its rank through
    ``record_replica_metadata``; one that does not counts by its position in id order)."""

    weights: list[float] = []

    def initialize_state(self, weights: Optional[list[float]] = None, **_: Any) -> None:
        self.weights = list(weights or [])

    async def choose_replicas(
        self, candidate_replicas: List[RunningReplica], pending_request: Optional[PendingRequest] = None
    ) -> List[List[RunningReplica]]:
        by_id = self._by_id(candidate_replicas)
        ranks_of: dict[str, int] = {}
        for pos, rid in enumerate(sorted(by_id)):
            rank = by_id[rid].replica_metadata.get("rank")
            ranks_of[rid] = rank if isinstance(rank, int) else pos
        ranks = balancing.weighted(ranks_of, self.weights, random.random())
        return self._ranks(by_id, ranks, pending_request)


class PrefixAffinityRouter(_OrionRouter):
    """Requests whose prompts share a prefix go to the same replica (its KV/prefix cache stays
    warm), unless that replica is far busier than the least loaded one."""

    prefix_chars = 256
    imbalance_threshold = 4

    def initialize_state(self, prefix_chars: int = 256, imbalance_threshold: int = 4, **_: Any) -> None:
        self.prefix_chars, self.imbalance_threshold = prefix_chars, imbalance_threshold

    async def choose_replicas(
        self, candidate_replicas: List[RunningReplica], pending_request: Optional[PendingRequest] = None
    ) -> List[List[RunningReplica]]:
        by_id = self._by_id(candidate_replicas)
        text = (
            balancing.prompt_text(pending_request.args, pending_request.kwargs)
            if pending_request is not None
            else None
        )
        ranks = balancing.prefix_affinity(
            text,
            self._queue_lens(by_id),
            prefix_chars=self.prefix_chars,
            imbalance_threshold=self.imbalance_threshold,
            turn=self._next_turn(),
        )
        return self._ranks(by_id, ranks, pending_request)


def check_router_class(path: str) -> None:
    """A custom router at the door: ``package.module:Class`` must import here and be a
    ``RequestRouter`` subclass (else a 422 naming ``load_balancing.router_class``). Importing runs
    the module, which is why only admins may name one."""
    field = "load_balancing.router_class"
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception as exc:  # any import-time failure is the caller's to fix
        raise ValidationError(
            f"cannot import {path}", [{"field": field, "problem": f"{type(exc).__name__}: {exc}"[:300]}]
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, RequestRouter)):
        raise ValidationError(
            f"{path} is not a request router",
            [{"field": field, "problem": "must be a subclass of ray.serve.request_router.RequestRouter"}],
        )
