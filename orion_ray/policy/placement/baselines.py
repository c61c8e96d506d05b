"""The FGD paper's baseline policies, reimplemented from their description.

Scores are integers 0..100 (truncated) as in the paper's Kubernetes-based simulator, because ties —
and so the fixed node order that breaks them — decide much of the outcome. Normalising constants are
the simulator's largest node (128 cores, 8 GPUs).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .arrays import MILLI, ClusterArrays, Req
from .engine import Policy

MAX_CPU = 128_000.0  # milli-cores of the largest node: normalises CPU terms
MAX_GPU = 8_000.0  # milli-GPUs of the largest node


class RandomPolicy(Policy):
    """A uniformly random feasible node, and a random GPU with room for a shared request."""

    name = "random"
    cacheable = False

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.rng = np.random.default_rng(seed)

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        s = self.rng.random(len(idx))
        if not req.shared:
            return s, None
        fits = arr.gpu[idx] >= req.milli
        # Random key per GPU, masked to fitting GPUs: the argmax is a uniform fitting GPU.
        keys = np.where(fits, self.rng.random(fits.shape), -1.0)
        return s, np.argmax(keys, axis=1)


class BestFitPolicy(Policy):
    """Least CPU and GPU left over after placement (equal weights), min-max normalised to 0..100."""

    name = "best_fit"

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        left = 0.0
        left = left + (arr.cpu[idx] - req.cpu) / MAX_CPU * 0.5
        left = left + (arr.gpu_free_total(idx) - req.gpu_milli_total) / MAX_GPU * 0.5
        return np.trunc((1.0 - left) * 100.0), None

    def finalize(self, scores: np.ndarray) -> np.ndarray:
        # The simulator rescales best-fit scores over the feasible nodes with integer division.
        hi, lo = scores.max(), scores.min()
        if hi == lo:
            return np.zeros_like(scores)
        out: np.ndarray = np.floor((scores - lo) * 100.0 / (hi - lo))
        return out


class GpuPackingPolicy(Policy):
    """Prefer sharing a used GPU, then free GPUs on a used node, then an idle node (fewest GPUs)."""

    name = "gpu_packing"

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if req.num_gpu == 0:
            return np.zeros(len(idx)), None
        g = arr.gpu[idx]
        count = arr.gpu_count[idx]
        full_free = (g == MILLI).sum(axis=1)
        idle_node = full_free == count
        s = np.empty(len(idx))
        s[idle_node] = np.maximum(100 // 3 - count[idle_node], count[idle_node])
        busy = ~idle_node
        if req.shared:
            # The tightest GPU with room; a fully free one means opening a fresh GPU.
            room = np.where(g >= req.milli, g, np.iinfo(np.int64).max)
            tight = room.min(axis=1)
            fresh = tight == MILLI
            case1 = np.maximum(100 - (tight * 100 // MILLI) // 10, 50)
            s[busy] = np.where(fresh[busy], np.maximum(100 // 2 - 1, 100 // 3), case1[busy])
        else:
            s[busy] = max(100 // 2 - req.num_gpu, 100 // 3)
        return s, None


class DotProductPolicy(Policy):
    """Tetris-style alignment: the smaller the dot product of free and requested (CPU, GPU), the
    better (it fills nodes whose free shape matches the request least wastefully)."""

    name = "dot_product"

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        node_cpu = arr.cpu[idx] / MAX_CPU
        node_gpu = arr.gpu_free_total(idx) / MAX_GPU
        dot = node_cpu * (req.cpu / MAX_CPU) + node_gpu * (req.gpu_milli_total / MAX_GPU)
        return np.trunc(100.0 * (1.0 - dot / 2.0)), None


class GpuClusteringPolicy(Policy):
    """Keep GPU requests of the same kind (shared, 1-GPU, 2-GPU, ...) together on nodes."""

    name = "gpu_clustering"

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if req.num_gpu == 0:
            return np.zeros(len(idx)), None
        tag = "share" if req.shared else f"{req.num_gpu}-gpu"
        mine = arr.affinity.get(tag, np.zeros(len(arr), dtype=np.int64))[idx] > 0
        kinds = np.zeros(len(idx), dtype=np.int64)
        for counts in arr.affinity.values():
            kinds += counts[idx] > 0
        used = 25 * (int(MAX_GPU) - arr.gpu_free_total(idx)) // int(MAX_GPU)
        base = np.where(mine, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        return (used + base).astype(np.float64), None
