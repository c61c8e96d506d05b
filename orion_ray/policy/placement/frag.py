"""GPU fragmentation of a node for a mix of typical requests (the FGD paper's measure), vectorised.

For each typical request (frequency ``p``) a node's free GPU capacity is split into what that request
could use and what it could not. If the request fits the node at all (type, CPU and enough GPUs with
room), the stranded part is the free capacity of GPUs too small for it; otherwise the whole free GPU
capacity is stranded for it. CPU-only requests strand all free GPU capacity. The node's fragmentation
is the frequency-weighted sum, in milli-GPUs. Memory is ignored, as in the paper.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np

from .arrays import MILLI, ClusterArrays, Req

Shape = tuple[Any, ...]  # (cpu milli, gpu milli per GPU, num_gpu, types)


def _type_str(types: Optional[frozenset[str]]) -> str:
    return "|".join(sorted(types)) if types else ""


@dataclass
class TypicalPods:
    """Typical request shapes with their frequencies (summing to 1)."""

    cpu: np.ndarray  # milli-cores
    milli: np.ndarray  # per GPU, 0 for CPU-only
    num: np.ndarray
    types: list[Any]  # Optional[frozenset] per shape
    freq: np.ndarray
    _typeok: dict[tuple[Optional[str], ...], np.ndarray] = field(default_factory=dict, repr=False)
    # Fragmentation of each node as it is now, by node index: (version stamp seen, value). It does
    # not depend on the request, so a score computes it once per node state, not once per shape.
    _before: Optional[tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False)

    @classmethod
    def from_counts(cls, counts: dict[Shape, Any], coverage: float = 0.95) -> "TypicalPods":
        """The most frequent shapes (most frequent first; ties by larger shape) until they cover
        ``coverage`` of the weight, frequencies renormalised over the kept shapes."""
        total = float(sum(counts.values()))
        ranked = sorted(
            counts.items(),
            reverse=True,
            key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], _type_str(kv[0][3])),
        )
        kept, cum = [], 0.0
        for shape, c in ranked:
            if cum >= coverage * total:
                break
            kept.append((shape, c))
            cum += c
        if not kept:
            kept = [((0, MILLI, 1, None), 1.0)]  # no history: assume whole single-GPU requests
            cum = 1.0
        return cls(
            np.array([s[0] for s, _ in kept], dtype=np.int64),
            np.array([s[1] for s, _ in kept], dtype=np.int64),
            np.array([s[2] for s, _ in kept], dtype=np.int64),
            [s[3] for s, _ in kept],
            np.array([c / cum for _, c in kept], dtype=np.float64),
        )

    @classmethod
    def from_reqs(cls, reqs: Iterable[Req], coverage: float = 0.95) -> "TypicalPods":
        """Typical shapes of a request list (memory ignored)."""
        return cls.from_counts(Counter(shape_of(r) for r in reqs), coverage)

    def __len__(self) -> int:
        return len(self.freq)

    def typeok(self, arr: ClusterArrays) -> np.ndarray:
        """[shapes, types+1] may shape k use a GPU of type index t (column 0: no GPU model)."""
        key = tuple(arr.type_names)
        if key not in self._typeok:
            names = [None] + list(arr.type_names)
            self._typeok[key] = np.array(
                [[ts is None or (t is not None and t in ts) for t in names] for ts in self.types], dtype=bool
            ).reshape(len(self), len(names))
        return self._typeok[key]


def shape_of(r: Req) -> Shape:
    """The shape of a request as the fragmentation measure sees it."""
    return (r.cpu, r.milli, r.num_gpu, r.types)


def frag_amount(
    tp: TypicalPods, typeok: np.ndarray, cpu: np.ndarray, gpu: np.ndarray, gtype: np.ndarray
) -> np.ndarray:
    """Expected stranded milli-GPUs of each state (rows of ``cpu``/``gpu``/``gtype``)."""
    total = gpu.sum(axis=1)
    gpu_shapes = tp.milli > 0
    out: np.ndarray = tp.freq[~gpu_shapes].sum() * total.astype(np.float64)
    if not gpu_shapes.any():
        return out
    m, num, c, p = tp.milli[gpu_shapes], tp.num[gpu_shapes], tp.cpu[gpu_shapes], tp.freq[gpu_shapes]
    # Per distinct per-GPU size: how many GPUs have room, and how much sits on GPUs without room.
    um, inv = np.unique(m, return_inverse=True)
    g3 = gpu[:, :, None]
    fits = g3 >= um[None, None, :]
    ge = fits.sum(axis=1)[:, inv]
    lt = np.where(fits, 0, g3).sum(axis=1)[:, inv]
    usable = typeok[gpu_shapes][:, gtype + 1].T & (ge >= num) & (cpu[:, None] >= c)
    stranded: np.ndarray = out + (np.where(usable, lt, total[:, None]) * p).sum(axis=1)
    return stranded


def candidate_states(
    arr: ClusterArrays, idx: np.ndarray, req: Req
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The states the nodes ``idx`` would be in after taking ``req``.

    Returns ``cpu`` [n, o], ``gpu`` [n, o, G], ``option_gpu`` [n, o] and ``valid`` [n, o]: one option
    per GPU for a shared request (which GPU to share) unless the runtime picks that GPU itself
    (``runtime_picks_shared_gpu``: only its pick), a single option otherwise (whole GPUs are the
    lowest-index fully free ones; which ones does not change the free-capacity multiset).
    """
    g = arr.gpu[idx]
    n, width = g.shape
    cpu_after = arr.cpu[idx] - req.cpu
    if req.shared and arr.runtime_picks_shared_gpu:
        # Ray chooses the GPU of a shared bundle itself (tightest fit, lowest index on ties): only
        # that option is real, so only that one is built and scored (one option, not one per GPU).
        fits = g >= req.milli
        tight = np.where(fits, g, np.iinfo(np.int64).max).argmin(axis=1)
        rows = np.arange(n)
        states = g.copy()
        states[rows, tight] -= req.milli
        return (cpu_after[:, None], states[:, None, :], tight[:, None], fits[rows, tight][:, None])
    if req.shared:
        valid = g >= req.milli
        states = np.repeat(g[:, None, :], width, axis=1)
        diag = np.arange(width)
        states[:, diag, diag] -= req.milli
        return (
            np.repeat(cpu_after[:, None], width, axis=1),
            states,
            np.broadcast_to(diag, (n, width)),
            valid,
        )
    states = g.copy()
    if req.num_gpu:
        full = states >= req.milli
        take = full & (np.cumsum(full, axis=1) <= req.num_gpu)
        states[take] -= req.milli
    return (
        cpu_after[:, None],
        states[:, None, :],
        np.full((n, 1), -1, dtype=np.int64),
        np.ones((n, 1), dtype=bool),
    )


def _frag_now(tp: TypicalPods, typeok: np.ndarray, arr: ClusterArrays, idx: np.ndarray) -> np.ndarray:
    """``frag_amount`` of the nodes ``idx`` as they are, cached per node version stamp (stamps are
    unique process-wide, so an index whose stamp matches holds the value of that very state)."""
    n = len(arr)
    if tp._before is None or len(tp._before[0]) != n:
        tp._before = (np.full(n, -1, dtype=np.int64), np.zeros(n))
    seen, val = tp._before
    stale = idx[seen[idx] != arr.version[idx]]
    if stale.size:
        val[stale] = frag_amount(tp, typeok, arr.cpu[stale], arr.gpu[stale], arr.gtype[stale])
        seen[stale] = arr.version[stale]
    out: np.ndarray = val[idx]
    return out


def frag_delta(
    tp: TypicalPods, arr: ClusterArrays, idx: np.ndarray, req: Req
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Increase of fragmentation [n, o] for each candidate option, its GPU and validity."""
    typeok = tp.typeok(arr)
    gt = arr.gtype[idx]
    before = _frag_now(tp, typeok, arr, idx)
    cpu, states, opt_gpu, valid = candidate_states(arr, idx, req)
    n, o, width = states.shape
    after = frag_amount(
        tp, typeok, cpu.reshape(n * o), states.reshape(n * o, width), np.repeat(gt, o)
    ).reshape(n, o)
    return after - before[:, None], opt_gpu, valid
