"""How many nodes of a pool pending gangs need: the reactive autoscaler's bin packing.

First-fit-decreasing of gang bundles onto the free capacity of the pool's ready nodes (busy ones
first, so idle nodes stay empty and can be released), then onto new empty nodes of the pool's
shape, respecting Ray's strategies. Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from .fit import ACCELERATOR_LABEL

if TYPE_CHECKING:
    from .autoscale_model import PoolSpec

_EPS = 1e-9


@dataclass(frozen=True)
class NodeSample:
    node_id: str
    pool: Optional[str]
    total: dict[str, Any]
    free: dict[str, Any]  # unused now
    running: int  # Orion workloads with bundles on it
    state: str  # "ready", "cordoned", "draining", "drained"
    idle_since: Optional[float]  # when it last became fully unused; None if in use
    fragmentation: float = 0.0  # 0..1, share of its free GPU capacity that is stranded


@dataclass(frozen=True)
class PendingGang:
    bundles: tuple[Any, ...]  # dict, ...
    strategy: str = "PACK"  # PACK / SPREAD / STRICT_PACK / STRICT_SPREAD
    pool: Optional[str] = None  # None: any pool whose shape and labels can hold it
    gpu_type: Optional[str] = None  # must match the pool's ray.io/accelerator-type label
    source: str = "orion"  # "orion" queue or "ray" pending placement group


def busy(n: NodeSample) -> bool:
    """Runs work: Orion's (``running``) or anything else (``idle_since`` is None). A drained
    node runs nothing whatever its idle_since says."""
    return n.running > 0 or (n.idle_since is None and n.state != "drained")


def fits(free: Mapping[str, float], bundle: Mapping[str, float]) -> bool:
    for k, v in bundle.items():  # a plain loop: this is the packing's innermost call
        if free.get(k, 0.0) + _EPS < v:
            return False
    return True


def _total(bundles: Sequence[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            total[k] = total.get(k, 0.0) + v
    return total


def can_hold(pool: PoolSpec, gang: PendingGang) -> bool:
    """Whether ``pool`` could ever hold ``gang`` (enough empty nodes of its shape, right type)."""
    if gang.gpu_type is not None and pool.labels.get(ACCELERATOR_LABEL) != gang.gpu_type:
        return False
    shape = pool.node_resources
    if not all(fits(shape, b) for b in gang.bundles):
        return False
    if gang.strategy == "STRICT_PACK":
        return fits(shape, _total(gang.bundles))
    if gang.strategy == "STRICT_SPREAD":
        return len(gang.bundles) <= pool.max_size
    return True


@dataclass
class Packing:
    in_use: int = 0  # nodes in use after packing: busy + existing ones used + new
    busy: int = 0  # nodes running work before packing (any state)
    busy_ready: int = 0
    opened_existing: int = 0  # idle ready nodes the gangs land on
    on_existing: int = 0  # gangs placed without a new node
    new: int = 0
    skipped: int = 0  # gangs that cannot fit one node of the shape


def _share(bundle: Mapping[str, float], shape: Mapping[str, float]) -> float:
    """Dominant share of a node: the decreasing order of first-fit-decreasing."""
    return max(
        (v / shape[k] if shape.get(k) else float("inf") for k, v in bundle.items() if v > 0), default=0.0
    )


def pack(shape: Mapping[str, float], nodes: Sequence[NodeSample], gangs: Sequence[PendingGang]) -> Packing:
    """Pack ``gangs`` onto ``nodes`` (the pool's samples) and new nodes of ``shape``.

    PACK prefers nodes the gang already uses, SPREAD prefers others but never opens a node just to
    spread (best effort), STRICT_SPREAD needs distinct nodes, STRICT_PACK one node. New nodes are
    not capped at the pool's max_size: the count is demand, the caller clamps. Inputs are not
    mutated.
    """
    out = Packing()
    ready = [n for n in nodes if n.state == "ready"]
    ready.sort(key=lambda n: (not busy(n), n.node_id))
    free: list[dict[str, Any]] = [dict(n.free) for n in ready]
    used: list[bool] = [busy(n) for n in ready]
    out.busy = sum(1 for n in nodes if busy(n))
    out.busy_ready = sum(used)
    n_existing = len(free)
    # start[key]: bins before it are known not to fit that bundle shape. Free space only shrinks,
    # so a bin that did not fit never will: each bundle scans few bins even with 1,000s of gangs.
    start: dict[tuple[Any, ...], int] = {}

    def first_fit(bundle: Mapping[str, float], exclude: set[Any]) -> int:
        key = tuple(sorted(bundle.items()))
        i = start.get(key, 0)
        prefix = True
        while i < len(free):
            if fits(free[i], bundle):
                if i not in exclude:
                    return i
                prefix = False  # fits but excluded for this gang: others may use it
            elif prefix:
                start[key] = i + 1
            i += 1
        return -1

    def take(i: int, bundle: Mapping[str, float]) -> int:
        if i < 0:  # a new node of the pool's shape
            free.append(dict(shape))
            used.append(False)
            i = len(free) - 1
        f = free[i]
        for k, v in bundle.items():
            f[k] = f.get(k, 0.0) - v
        used[i] = True
        return i

    order = sorted(
        range(len(gangs)), key=lambda j: (-_share(_total(gangs[j].bundles), shape), -len(gangs[j].bundles), j)
    )
    for j in order:
        g = gangs[j]
        before = len(free)
        if not all(fits(shape, b) for b in g.bundles) or (
            g.strategy == "STRICT_PACK" and not fits(shape, _total(g.bundles))
        ):
            out.skipped += 1
            continue
        if g.strategy == "STRICT_PACK":
            total = _total(g.bundles)
            take(first_fit(total, set()), total)
        else:
            mine: list[int] = []
            bundles = sorted(g.bundles, key=lambda b: -_share(b, shape))
            for b in bundles:
                i = -1
                if g.strategy == "PACK":
                    i = next((m for m in mine if fits(free[m], b)), -1)
                    if i < 0:
                        i = first_fit(b, set())
                else:  # SPREAD, STRICT_SPREAD: a node this gang does not use yet
                    i = first_fit(b, set(mine))
                    if i < 0 and g.strategy == "SPREAD":
                        i = next((m for m in mine if fits(free[m], b)), -1)
                mine.append(take(i, b))
        if len(free) == before:
            out.on_existing += 1
    out.new = len(free) - n_existing
    out.opened_existing = sum(used[:n_existing]) - out.busy_ready
    out.in_use = out.busy + out.opened_existing + out.new
    return out
