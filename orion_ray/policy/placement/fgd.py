"""FGD — Fragmentation Gradient Descent (Weng et al., USENIX ATC'23), reimplemented.

Scores a node by how little placing the request there raises the node's expected fragmentation for
the typical request mix: ``int(100 * sigmoid(-delta / 1000))`` with ``delta`` in milli-GPUs, so scores
are integers 0..100 as in the paper's simulator (ties then go to the fixed node order). A shared-GPU
request goes to the GPU with the best such score (lowest index on ties).

The typical mix is the most frequent shapes of a given request list (the paper uses the whole
trace); without one it is learnt from the requests observed so far.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Optional

import numpy as np

from .arrays import ClusterArrays, Req
from .engine import Policy
from .frag import TypicalPods, frag_delta, shape_of
from .types import BundleRequest


def sigmoid_score(delta: np.ndarray) -> np.ndarray:
    """The paper's integer score of a fragmentation increase ``delta`` (milli-GPUs)."""
    with np.errstate(over="ignore"):
        return np.floor((1.0 / (1.0 + np.exp(delta / 1000.0))) * 100.0)


class FGDPolicy(Policy):
    """The paper's FGD scorer."""

    name = "fgd"

    def __init__(
        self, seed: int = 0, typical: Optional[Iterable[BundleRequest]] = None, coverage: float = 0.95
    ) -> None:
        super().__init__(seed)
        self.coverage = coverage
        self._counts: Counter[Any] = Counter()
        self._fixed = typical is not None
        if typical is not None:
            self._counts.update(shape_of(Req.from_bundle(b)) for b in typical)
        self._seen = sum(self._counts.values())
        self._tp = TypicalPods.from_counts(dict(self._counts), self.coverage)
        self._tp_seen = self._seen

    def observe(self, bundle: BundleRequest) -> None:
        """Without a fixed request list, count the request towards the typical mix."""
        if self._fixed:
            return
        self._counts[shape_of(Req.from_bundle(bundle))] += 1
        self._seen += 1
        # Rebuild at doubling counts: the mix settles quickly and every rebuild invalidates caches.
        if self._seen >= 2 * max(self._tp_seen, 8):
            self._tp = TypicalPods.from_counts(dict(self._counts), self.coverage)
            self._tp_seen = self._seen
            self.model_version += 1

    def typical(self) -> TypicalPods:
        """The current typical-request mix."""
        return self._tp

    def score(self, arr: ClusterArrays, idx: np.ndarray, req: Req) -> tuple[np.ndarray, Optional[np.ndarray]]:
        delta, opt_gpu, valid = frag_delta(self.typical(), arr, idx, req)
        s = np.where(valid, sigmoid_score(delta), -1.0)
        best = np.argmax(s, axis=1)  # first (lowest GPU index) of the best scores
        rows = np.arange(len(idx))
        return s[rows, best], (opt_gpu[rows, best] if req.shared else None)
