"""Dispatch of runs to regions: filter, score, a blocklist with expiry (pure; docs/regions.md).

The control plane asks ``decide`` for one run (with every region's reasons, as ``explain`` shows
them) or ``plan_dispatch`` for a batch: the batch deducts each choice from a private copy of the
regions' free capacity, so two runs of one batch never count the same free GPU. Nothing here reads a
clock or a store: ``now`` and the snapshots are the caller's, and no argument is ever mutated.

Region states: ``active`` takes new work; ``draining`` finishes what it has and takes nothing new;
``inactive`` (lost, or switched off) takes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Sequence

RegionState = Literal["active", "draining", "inactive"]
REGION_STATES: tuple[RegionState, ...] = ("active", "draining", "inactive")

# Why a dispatch attempt failed; each blocks the region for a while (SkyPilot's failover blocklist).
FailureKind = Literal["refused", "throttled", "timeout", "launch_failed"]
FAILURE_KINDS: tuple[FailureKind, ...] = ("refused", "throttled", "timeout", "launch_failed")
ANY_GPU = "*"


@dataclass(frozen=True)
class RegionView:
    """What the control plane knows of a region from its last heartbeat and its config."""

    name: str
    state: RegionState = "active"
    labels: Mapping[str, str] = field(default_factory=dict)
    free_gpus: Mapping[str, float] = field(default_factory=dict)  # GPU type → free now
    gpu_types: frozenset[str] = frozenset()  # types it has at all (empty: those in free_gpus)
    free_cpus: float = 0.0
    queue_depth: int = 0
    launch_failures: int = 0  # recent failed launches (heartbeat's launch health)
    gpu_price: Mapping[str, float] = field(default_factory=dict)  # GPU type → $ per GPU-hour
    cpu_price: float = 0.0  # $ per CPU-hour
    allowed_tenants: frozenset[str] = frozenset()  # empty: every tenant

    def offers(self, gpu_type: str) -> bool:
        """Whether the region has GPUs of ``gpu_type`` at all (free or not)."""
        return gpu_type in self.gpu_types or gpu_type in self.free_gpus


@dataclass(frozen=True)
class RunRequest:
    """A run to place: its tenant, size, and where it may or would rather go."""

    run_id: str
    tenant_id: str
    gpus: float = 0.0
    gpu_type: Optional[str] = None  # None: any type
    cpus: float = 0.0
    region: Optional[str] = None  # pin: only this region
    region_selector: Mapping[str, str] = field(default_factory=dict)  # every label must match
    preference: Sequence[str] = ()  # regions, best first


@dataclass(frozen=True)
class DispatchWeights:
    """Weights of the score's terms (each term is in [0, 1]) and the queueing rule."""

    preference: float = 4.0
    capacity: float = 2.0
    queue: float = 1.0
    price: float = 1.0
    health: float = 1.0
    # Without free capacity anywhere a run may still go to a region's queue (the region's own
    # scheduler waits for capacity or its autoscaler adds it) while that queue is short.
    queue_when_full: bool = True
    max_queue_depth: int = 1000
    block_s: float = 60.0  # first block after a failure; doubles per repeat
    max_block_s: float = 900.0


@dataclass(frozen=True)
class BlockEntry:
    """One block: until when, how many times in a row, and why."""

    until: float
    strikes: int
    reason: str


@dataclass(frozen=True)
class Blocklist:
    """Regions (or one GPU type of a region) not to try until an instant; immutable."""

    entries: Mapping[tuple[str, str], BlockEntry] = field(default_factory=dict)

    def blocked(self, region: str, gpu_type: Optional[str], now: float) -> Optional[BlockEntry]:
        """The block in force for ``region`` (whole, or for ``gpu_type``) at ``now``, if any."""
        if not self.entries:
            return None
        for key in ((region, ANY_GPU), (region, gpu_type or ANY_GPU)):
            e = self.entries.get(key)
            if e is not None and e.until > now:
                return e
        return None

    def block(
        self,
        region: str,
        *,
        kind: FailureKind,
        now: float,
        gpu_type: Optional[str] = None,
        weights: DispatchWeights = DispatchWeights(),
        detail: str = "",
    ) -> "Blocklist":
        """A new blocklist with ``region`` blocked after a failure of ``kind``.

        Capacity failures (429, a failed launch) block only the GPU type asked for, since the region
        still serves other work; a refusal or a timeout blocks the whole region. A repeat within
        ``max_block_s`` of the last block's end doubles the time, so a region that keeps failing is
        tried rarely while one that failed once is back soon.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"kind: one of {', '.join(FAILURE_KINDS)}, not {kind!r}")
        scope = gpu_type if kind in ("throttled", "launch_failed") and gpu_type else ANY_GPU
        key = (region, scope)
        prev = self.entries.get(key)
        strikes = 1
        if prev is not None and now - prev.until < weights.max_block_s:
            strikes = prev.strikes + 1
        seconds = min(weights.max_block_s, weights.block_s * 2 ** min(strikes - 1, 16))
        reason = f"{kind}{': ' + detail if detail else ''}"
        entries = dict(self.entries)
        entries[key] = BlockEntry(until=now + seconds, strikes=strikes, reason=reason)
        return Blocklist(entries)

    def prune(self, now: float, keep_s: float = 900.0) -> "Blocklist":
        """Without entries that ended more than ``keep_s`` ago (their strikes no longer count)."""
        return Blocklist({k: e for k, e in self.entries.items() if now - e.until < keep_s})


@dataclass(frozen=True)
class Decision:
    """Where a run goes (``region`` None: nowhere now), the candidates best first, and why."""

    run_id: str
    region: Optional[str]
    queued: bool  # sent to the region's queue without free capacity there now
    ranked: tuple[tuple[str, float], ...]
    reasons: Mapping[str, list[dict[str, str]]]


def _reason(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _rejection(run: RunRequest, r: RegionView, blocks: Blocklist, now: float) -> Optional[dict[str, str]]:
    """Why ``r`` cannot take ``run`` at all (capacity aside), or None."""
    if run.region is not None and r.name != run.region:
        return _reason("pin", f"the run is pinned to region {run.region}")
    if r.state != "active":
        return _reason("state", f"region is {r.state}")
    if r.allowed_tenants and run.tenant_id not in r.allowed_tenants:
        return _reason("tenant", f"tenant {run.tenant_id} is not allowed in this region")
    for k, v in run.region_selector.items():
        if r.labels.get(k) != v:
            return _reason("selector", f"label {k}={v} not matched (region has {r.labels.get(k)!r})")
    if run.gpus > 0 and run.gpu_type is not None and not r.offers(run.gpu_type):
        return _reason("gpu_type", f"no {run.gpu_type} GPUs in this region")
    if run.gpus > 0 and run.gpu_type is None and not (r.gpu_types or r.free_gpus):
        return _reason("gpu_type", "no GPUs in this region")
    e = blocks.blocked(r.name, run.gpu_type, now)
    if e is not None:
        return _reason("blocked", f"blocked for {e.until - now:.0f}s more after {e.reason}")
    return None


def _free_gpu(run: RunRequest, free: Mapping[str, float]) -> tuple[Optional[str], float]:
    """The GPU type the run would use and how many of it are free (any type: the freest)."""
    if run.gpu_type is not None:
        return run.gpu_type, free.get(run.gpu_type, 0.0)
    if not free:
        return None, 0.0
    t = max(sorted(free), key=lambda k: free[k])
    return t, free[t]


def _price(run: RunRequest, r: RegionView, gpu_type: Optional[str]) -> float:
    gpu = r.gpu_price.get(gpu_type, 0.0) if gpu_type else 0.0
    return run.gpus * gpu + run.cpus * r.cpu_price


@dataclass
class _Candidate:
    name: str
    fits: bool
    gpu_type: Optional[str]
    free: float  # free GPUs of the type used (CPUs for a CPU-only run)
    queue: int
    price: float
    failures: int


def _rank(
    run: RunRequest, cands: list[_Candidate], w: DispatchWeights
) -> list[tuple[str, float, _Candidate]]:
    """Candidates best first: fitting ones before queue-only ones, then by score, then by name."""
    pref = {name: i for i, name in enumerate(run.preference)}
    n_pref = max(len(run.preference), 1)
    top_free = max((c.free for c in cands), default=0.0) or 1.0
    top_queue = max((c.queue for c in cands), default=0) or 1
    prices = [c.price for c in cands]
    lo, hi = min(prices, default=0.0), max(prices, default=0.0)
    out = []
    for c in cands:
        s = w.preference * (1.0 - pref[c.name] / n_pref if c.name in pref else 0.0)
        s += w.capacity * (c.free / top_free if c.fits else 0.0)
        s += w.queue * (1.0 - c.queue / top_queue)
        s += w.price * ((hi - c.price) / (hi - lo) if hi > lo else 1.0)
        s += w.health / (1.0 + c.failures)
        out.append((c.name, round(s, 6), c))
    out.sort(key=lambda t: (not t[2].fits, -t[1], t[0]))
    return out


def _evaluate(
    run: RunRequest,
    regions: Sequence[RegionView],
    free_gpus: Mapping[str, Mapping[str, float]],
    free_cpus: Mapping[str, float],
    queues: Mapping[str, int],
    blocks: Blocklist,
    w: DispatchWeights,
    now: float,
    explain: bool,
) -> tuple[list[_Candidate], dict[str, list[dict[str, str]]]]:
    cands: list[_Candidate] = []
    reasons: dict[str, list[dict[str, str]]] = {}
    for r in regions:
        why = _rejection(run, r, blocks, now)
        if why is not None:
            if explain:
                reasons[r.name] = [why]
            continue
        gtype, gfree = _free_gpu(run, free_gpus[r.name])
        cpus = free_cpus[r.name]
        fits = (run.gpus <= gfree if run.gpus > 0 else True) and run.cpus <= cpus
        queue = queues[r.name]
        if not fits and not (w.queue_when_full and queue < w.max_queue_depth):
            if explain:
                what = f"{run.gpus:g} {gtype or 'GPU'}" if run.gpus > 0 else f"{run.cpus:g} CPU"
                reasons[r.name] = [_reason("capacity", f"{what} asked, not free; queue {queue} is full")]
            continue
        free = gfree if run.gpus > 0 else cpus
        cands.append(_Candidate(r.name, fits, gtype, free, queue, _price(run, r, gtype), r.launch_failures))
    return cands, reasons


def decide(
    run: RunRequest,
    regions: Sequence[RegionView],
    *,
    blocklist: Blocklist = Blocklist(),
    weights: DispatchWeights = DispatchWeights(),
    now: float,
) -> Decision:
    """Where ``run`` goes now, with a reason for every region (as ``explain`` shows it)."""
    free_gpus = {r.name: r.free_gpus for r in regions}
    free_cpus = {r.name: r.free_cpus for r in regions}
    queues = {r.name: r.queue_depth for r in regions}
    cands, reasons = _evaluate(run, regions, free_gpus, free_cpus, queues, blocklist, weights, now, True)
    if run.region is not None and run.region not in free_gpus:
        reasons[run.region] = [_reason("pin", f"the run is pinned to region {run.region}, which is unknown")]
    return _decision(run, cands, reasons, weights, explain=True)


def _decision(
    run: RunRequest,
    cands: list[_Candidate],
    reasons: dict[str, list[dict[str, str]]],
    w: DispatchWeights,
    explain: bool,
) -> Decision:
    ranked = _rank(run, cands, w) if cands else []
    if explain:
        for i, (name, score, c) in enumerate(ranked):
            how = "fits now" if c.fits else f"queued behind {c.queue}"
            code = "chosen" if i == 0 else "candidate"
            reasons[name] = [_reason(code, f"score {score:.3f}, {how}")]
    best = ranked[0] if ranked else None
    return Decision(
        run_id=run.run_id,
        region=best[0] if best else None,
        queued=bool(best and not best[2].fits),
        ranked=tuple((n, s) for n, s, _ in ranked),
        reasons=reasons,
    )


def plan_dispatch(
    runs: Sequence[RunRequest],
    regions: Sequence[RegionView],
    *,
    blocklist: Blocklist = Blocklist(),
    weights: DispatchWeights = DispatchWeights(),
    now: float,
    explain: bool = False,
) -> list[Decision]:
    """One decision per run, in the order given (the caller's queue order).

    Each choice is taken off a private copy of the free capacity (or added to the region's queue
    depth when queued), so later runs of the batch see what earlier ones left. ``explain`` keeps
    every region's reason per run; off, only the ranking is kept (the fast path of the control
    plane's loop).
    """
    free_gpus = {r.name: dict(r.free_gpus) for r in regions}
    free_cpus = {r.name: r.free_cpus for r in regions}
    queues = {r.name: r.queue_depth for r in regions}
    out = []
    for run in runs:
        cands, reasons = _evaluate(
            run, regions, free_gpus, free_cpus, queues, blocklist, weights, now, explain
        )
        d = _decision(run, cands, reasons, weights, explain)
        if d.region is not None:
            chosen = next(c for c in cands if c.name == d.region)
            if d.queued:
                queues[d.region] += 1
            else:
                if run.gpus > 0 and chosen.gpu_type is not None:
                    free_gpus[d.region][chosen.gpu_type] -= run.gpus
                free_cpus[d.region] -= run.cpus
        out.append(d)
    return out
