"""Orion's default placement policy: FGD's fragmentation measure plus a look-ahead at the resources
and GPU types that future requests will need, with the request mix learnt online.

A node's score is how little placing the request there raises its expected *waste* (milli-GPUs):

1. **fragmentation** for the typical request mix (the FGD measure, ``frag.py``): free GPU capacity a
   typical next request could not use;
2. **resource look-ahead**: free GPUs the node's remaining CPU (or memory) cannot feed. GPU requests
   bring on average ``r`` milli-cores per milli-GPU (learnt online), so a node with ``F`` free
   milli-GPUs and ``C`` free milli-cores strands ``max(0, F - C / r)`` milli-GPUs sooner or later.
   FGD only sees this one request ahead (a typical request that no longer fits): it happily burns the
   CPU of a GPU-dense node on GPU-light work and strands that node's last GPUs. This term alone buys
   0.5-0.9 points of GPU allocation on the Alibaba traces;
3. **type look-ahead**: a request that may run on several GPU models pays, on a node of model ``t``,
   for the share of future demand from requests with strictly fewer options that only models
   including ``t`` can serve (per unit of those models' capacity). Flexible work then leaves scarce
   models to the requests that need them instead of making those fail early (FGD sees the same
   thing one request ahead, too weakly to matter).

Scores are FGD's coarse integers ``floor(100 * sigmoid(-waste_delta / 1000))`` (exact float deltas do
as well with the look-ahead terms, and far worse without them); ties go to the node left with the least
free GPU capacity (CPU work lands on CPU-only nodes first), then to the fixed node order. A shared GPU
request takes the GPU with the best score, then the tightest fit.

The request mix (typical shapes, ``r`` and per-type demand) is learnt from ``observe``d requests and
rebuilt each time the count doubles, so the live scheduler needs no trace; a fixed list can be given
with ``typical=`` instead.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Optional

import numpy as np

from .arrays import ClusterArrays, Req
from .engine import Policy
from .fgd import sigmoid_score
from .frag import TypicalPods, frag_delta, shape_of
from .types import BundleRequest

# Before any GPU request has been seen: milli-cores per milli-GPU (a GPU with 10 cores); memory off.
PRIOR_CPU_PER_GPU = 10.0


class OrionPolicy(Policy):
    """Fragmentation plus resource and type look-ahead (see the module docstring)."""

    name = "orion"

    def __init__(
        self,
        seed: int = 0,
        typical: Optional[Iterable[BundleRequest]] = None,
        coverage: float = 0.95,
        resource_lookahead: float = 1.0,
        type_lookahead: float = 1.0,
        tie: str = "bestfit",
        exact: bool = False,
    ) -> None:
        """``resource_lookahead``/``type_lookahead`` weigh the look-ahead terms (0 turns one off);
        ``tie`` is ``"bestfit"`` or ``"order"``; ``exact`` scores exact float deltas instead of
        FGD's integers. All defaults are Orion's default policy."""
        super().__init__(seed)
        if tie not in ("bestfit", "order"):
            raise ValueError("tie must be 'bestfit' or 'order'")
        self.coverage = coverage
        self.resource_lookahead = resource_lookahead
        self.type_lookahead = type_lookahead
        self.tie, self.exact = tie, exact
        self._counts: Counter[Any] = Counter()
        self._gpu_cpu = self._gpu_mem = self._gpu_milli = 0.0
        self._fixed = typical is not None
        for b in typical or ():
            self._add(Req.from_bundle(b))
        self._seen = sum(self._counts.values())
        self._rebuild()

    # -- the learnt request mix ----------------------------------------------------------------
    def _add(self, r: Req) -> None:
        self._counts[shape_of(r)] += 1
        if r.num_gpu:
            self._gpu_cpu += r.cpu
            self._gpu_mem += r.mem
            self._gpu_milli += r.gpu_milli_total

    def _rebuild(self) -> None:
        self._tp = TypicalPods.from_counts(dict(self._counts), self.coverage)
        self._built_at = self._seen
        if self._gpu_milli > 0:
            self._cpu_ratio = self._gpu_cpu / self._gpu_milli
            self._mem_ratio = self._gpu_mem / self._gpu_milli
        else:
            self._cpu_ratio, self._mem_ratio = PRIOR_CPU_PER_GPU, 0.0
        self._need_cache: dict[tuple[Any, ...], np.ndarray] = {}
        self.model_version += 1

    def observe(self, bundle: BundleRequest) -> None:
        """Count a submitted request towards the learnt mix (unless a fixed list was given)."""
        if self._fixed:
            return
        self._add(Req.from_bundle(bundle))
        self._seen += 1
        # Rebuild at doubling counts: the mix settles fast and each rebuild invalidates caches.
        if self._seen >= 2 * max(self._built_at, 8):
            self._rebuild()

    # -- look-ahead terms ----------------------------------------------------------------------
    def _stranded(self, gpu_free: np.ndarray, cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """Free milli-GPUs that the node's CPU (or memory) cannot feed at the learnt ratios."""
        feedable = cpu / self._cpu_ratio
        if self._mem_ratio > 0:
            feedable = np.minimum(feedable, mem / self._mem_ratio)
        return np.maximum(0.0, gpu_free - feedable)

    def type_need(self, arr: ClusterArrays, allowed: Optional[frozenset[str]] = None) -> np.ndarray:
        """Per GPU model (index + 1; 0: none), for a request allowed on ``allowed`` (None: any):
        the share of GPU demand from requests with strictly fewer options that only models
        including this one can serve, divided by those models' share of the cluster's GPUs."""
        key = (tuple(arr.type_names), allowed)
        if key in self._need_cache:
            return self._need_cache[key]
        cap = np.bincount(
            arr.gtype[arr.gtype >= 0], weights=arr.gpu_count[arr.gtype >= 0], minlength=len(arr.type_names)
        ).astype(np.float64)
        tp = self._tp
        demand = tp.freq * tp.milli * tp.num
        need = np.zeros(len(arr.type_names) + 1)
        if demand.sum() > 0 and cap.sum() > 0:
            for k, types in enumerate(tp.types):
                narrower = types is not None and (allowed is None or types < allowed)
                if not narrower or demand[k] == 0:
                    continue
                sel = np.array([t in types for t in arr.type_names], dtype=bool)
                if cap[sel].sum() > 0:
                    need[1:][sel] += demand[k] / demand.sum() * cap.sum() / cap[sel].sum()
        self._need_cache[key] = need
        return need

    # -- scoring -------------------------------------------------------------------------------
    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        delta, opt_gpu, valid = frag_delta(self._tp, arr, idx, req)
        extra = np.zeros(len(idx))
        if self.resource_lookahead:
            free = arr.gpu_free_total(idx).astype(np.float64)
            cpu, mem = arr.cpu[idx].astype(np.float64), arr.mem[idx]
            extra += self.resource_lookahead * (
                self._stranded(free - req.gpu_milli_total, cpu - req.cpu, mem - req.mem)
                - self._stranded(free, cpu, mem)
            )
        if self.type_lookahead and req.num_gpu and (req.types is None or len(req.types) > 1):
            need = self.type_need(arr, req.types)
            extra += self.type_lookahead * req.gpu_milli_total * need[arr.gtype[idx] + 1]
        delta = delta + extra[:, None]
        primary = -delta if self.exact else sigmoid_score(delta)
        primary = np.where(valid, primary, -np.inf)
        rows = np.arange(len(idx))
        if req.shared and primary.shape[1] > 1:
            # Among equally good GPUs the tightest fit (then the lowest index, argmax's first).
            g = arr.gpu[idx]
            best_score = primary.max(axis=1, keepdims=True)
            best = np.argmax(np.where(primary == best_score, -g, np.iinfo(np.int64).min), axis=1)
        else:
            best = np.zeros(len(idx), dtype=np.int64)
        score = primary[rows, best]
        if self.tie == "bestfit":
            # Lexicographic (score, least free GPU left): free milli-GPUs are < 1e6 per node.
            left = arr.gpu_free_total(idx) - req.gpu_milli_total
            score = score * 1e6 - left if not self.exact else score - left * 1e-9
        # (one option per node when the runtime picks the shared GPU: ``best`` is 0, its pick)
        return score, (opt_gpu[rows, best] if req.shared else None)
