"""Orion's default placement policy (experimental options while being developed)."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

import numpy as np

from .arrays import ClusterArrays, Req
from .engine import Policy
from .fgd import sigmoid_score
from .frag import TypicalPods, frag_delta, shape_of
from .types import BundleRequest


class OrionPolicy(Policy):
    """Fragmentation-aware scorer with an online-learned request mix."""

    name = "orion"

    def __init__(self, seed: int = 0, typical: Optional[Iterable[BundleRequest]] = None,
                 coverage: float = 0.95, quantum: float = 0.0, tie: str = "none",
                 sigmoid: bool = True, gpu_weight: float = 0.0, rebuild: float = 2.0,
                 prefix: int = 0, cpu_look: float = 0.0, cpu_only_look: bool = False,
                 type_look: float = 0.0) -> None:
        super().__init__(seed)
        self.coverage, self.quantum, self.tie, self.sigmoid = coverage, quantum, tie, sigmoid
        self.gpu_weight = gpu_weight
        self.rebuild = rebuild
        self.prefix = prefix
        self.cpu_look = cpu_look
        self.cpu_only_look = cpu_only_look
        self.type_look = type_look
        self._need: dict = {}
        self._need_arr = None
        self._gcpu = 0.0
        self._ggpu = 0.0
        self._ratio = 10.0
        self._counts: Counter = Counter()
        self._fixed = typical is not None
        if typical is not None:
            for b in typical:
                self._add(Req.from_bundle(b))
        self._seen = sum(self._counts.values())
        self._tp = self._build()
        self._tp_seen = self._seen

    def _add(self, r: Req) -> None:
        if r.num_gpu:
            self._gcpu += r.cpu
            self._ggpu += r.gpu_milli_total
        w = 1.0 + self.gpu_weight * (r.gpu_milli_total / 1000.0)
        self._counts[shape_of(r)] += w

    def _build(self) -> TypicalPods:
        if self._ggpu > 0:
            self._ratio = self._gcpu / self._ggpu
        return TypicalPods.from_counts(dict(self._counts), self.coverage)

    def _type_need(self, arr: ClusterArrays) -> np.ndarray:
        key = (tuple(arr.type_names), self.model_version)
        if self._need_arr is not None and self._need_arr[0] == key:
            return self._need_arr[1]
        names = list(arr.type_names)
        cap = np.array([arr.gpu_count[arr.gtype == i].sum() for i in range(len(names))], float)
        total = cap.sum()
        tp = self._tp
        dem = tp.freq * tp.milli * tp.num
        dem_total = dem.sum()
        need = np.zeros(len(names) + 1)
        if dem_total > 0 and total > 0:
            for k, types in enumerate(tp.types):
                if types is None or dem[k] == 0:
                    continue
                idxs = [i for i, n in enumerate(names) if n in types]
                c = cap[idxs].sum()
                if c <= 0:
                    continue
                # Share of all GPU demand that only these types can serve, per unit of their capacity.
                for i in idxs:
                    need[i + 1] += dem[k] / dem_total * total / c
        self._need_arr = (key, need)
        return need

    def observe(self, bundle: BundleRequest) -> None:
        if self._fixed:
            return
        self._add(Req.from_bundle(bundle))
        self._seen += 1
        if self.prefix and self._seen > self.prefix:
            return
        if self._seen >= self.rebuild * max(self._tp_seen, 8) or self._seen == self.prefix:
            self._tp = self._build()
            self._tp_seen = self._seen
            self.model_version += 1

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req
              ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        delta, opt_gpu, valid = frag_delta(self._tp, arr, idx, req)
        if self.type_look and req.types is None and req.num_gpu:
            need = self._type_need(arr)
            delta = delta + (self.type_look * req.gpu_milli_total * need[arr.gtype[idx] + 1])[:, None]
        if self.cpu_look and not (self.cpu_only_look and req.num_gpu):
            f0 = arr.gpu_free_total(idx).astype(float)
            c0 = arr.cpu[idx].astype(float)
            s0 = np.maximum(0.0, f0 - c0 / self._ratio)
            s1 = np.maximum(0.0, f0 - req.gpu_milli_total - (c0 - req.cpu) / self._ratio)
            delta = delta + self.cpu_look * (s1 - s0)[:, None]
        if self.sigmoid:
            primary = sigmoid_score(delta)
        elif self.quantum > 0:
            primary = -np.round(delta / self.quantum)
        else:
            primary = -delta
        primary = np.where(valid, primary, -1e12)
        rows = np.arange(len(idx))
        if req.shared:
            # Tie between GPUs: the tightest fit.
            g = arr.gpu[idx]
            key = primary * 1e4 - np.where(valid, g, 0)
            best = np.argmax(key, axis=1)
        else:
            best = np.zeros(len(idx), dtype=np.int64)
        s = primary[rows, best]
        if self.tie == "bestfit":
            left = arr.gpu_free_total(idx) - req.gpu_milli_total
            s = s * 1e6 - left
        elif self.tie == "cpufit":
            left = arr.gpu_free_total(idx) - req.gpu_milli_total
            s = s * 1e6 - left * 1e2 - (arr.cpu[idx] - req.cpu) / 1000.0
        return s, (opt_gpu[rows, best] if req.shared else None)
