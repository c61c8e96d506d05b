"""The autoscaler actor's decision function: how many nodes each pool should have, and which go.

``decide(ctx, state, now)`` is pure: it reads a snapshot (pools, node samples, pending gangs,
history) and the checkpointed :class:`AutoscaleState`, and returns a :class:`Decision` plus a new
state. No ray/boto3/kubernetes/fastapi; ``now`` is injected so tests and the simulator drive time.

Sizes are whole nodes of the pool's shape. The actor turns a decision into Ray's
``request_resources(bundles=..., bundle_label_selectors=...)`` (see
:meth:`Decision.request_bundles`) and releases the nodes a scale-down names.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from ..schedules import ScheduleWindow, parse_window
from .autoscale_forecast import HistoryPoint, seasonal_forecast
from .autoscale_model import (
    POLICIES,
    AutoscaleContext,
    AutoscaleState,
    Decision,
    PoolDecision,
    PoolObservation,
    PoolSpec,
    PoolState,
    ScalingParams,
    params_from_config,
)
from .autoscale_packing import NodeSample, PendingGang, can_hold, pack

__all__ = [
    "ScalingParams",
    "params_from_config",
    "ScheduleWindow",
    "parse_window",
    "PoolSpec",
    "NodeSample",
    "PendingGang",
    "PoolObservation",
    "HistoryPoint",
    "AutoscaleContext",
    "AutoscaleState",
    "PoolState",
    "PoolDecision",
    "Decision",
    "assign_pending",
    "nodes_for",
    "reactive",
    "predictive",
    "schedule",
    "hybrid",
    "decide",
    "record_point",
    "POLICIES",
]


# -- assignment and packing -----------------------------------------------------------------------
def assign_pending(pools: Sequence[PoolSpec], gangs: Sequence[PendingGang]) -> dict[str, list[PendingGang]]:
    """Each gang to the first pool (config order) that can ever hold it; an explicit ``pool``
    wins. Key ``""`` (always present) lists the gangs no pool can hold: the actor reports them."""
    out: dict[str, list[PendingGang]] = {p.name: [] for p in pools}
    out[""] = []
    by_name = {p.name: p for p in pools}
    for g in gangs:
        if g.pool is not None:
            p = by_name.get(g.pool)
            out[p.name if p is not None and can_hold(p, g) else ""].append(g)
            continue
        home = next((p.name for p in pools if can_hold(p, g)), "")
        out[home].append(g)
    return out


def nodes_for(pool: PoolSpec, nodes: Sequence[NodeSample], gangs: Sequence[PendingGang]) -> int:
    """Nodes of ``pool`` in use once ``gangs`` are packed: nodes with work, plus existing ready
    nodes the gangs land on, plus new nodes of the pool's shape (first-fit-decreasing)."""
    return pack(pool.node_resources, nodes, gangs).in_use


# -- policies -------------------------------------------------------------------------------------
def _fmt(shape: Mapping[str, Any]) -> str:
    return "{" + ",".join(f"{k}:{v:g}" for k, v in shape.items()) + "}"


def _reactive_parts(pool: PoolSpec, obs: PoolObservation) -> dict[str, tuple[int, str]]:
    """Each reactive rule's wanted size with its reason; the reactive size is their max."""
    prm = pool.params
    pk = pack(pool.node_resources, obs.nodes, obs.pending)
    parts = {"in_use": (pk.busy, f"{pk.busy} node(s) run work")}
    if obs.pending:
        gpus = sum(b.get("GPU", 0) for g in obs.pending for b in g.bundles)
        fit_note = f"; {pk.skipped} cannot fit a node" if pk.skipped else ""
        parts["queue"] = (
            pk.in_use,
            (
                f"{len(obs.pending)} pending gang(s) ({gpus:g} GPUs): {pk.on_existing} fit on "
                f"existing nodes, the rest need {pk.new} new node(s) of {_fmt(pool.node_resources)}; "
                f"{pk.in_use} nodes in use with them{fit_note}"
            ),
        )
    if obs.queue_depth > 0:  # queued work keeps at least one node; more above the target depth
        n = math.ceil(obs.queue_depth / prm.target_queue_depth)
        if n > parts.get("queue", (0, ""))[0]:
            parts["queue"] = (
                n,
                f"queue depth {obs.queue_depth} at {prm.target_queue_depth} per node needs {n} nodes",
            )
    gpn = pool.node_resources.get("GPU", 0)
    if obs.serving_gpus > 0 and gpn > 0:
        extra = math.ceil(obs.serving_gpus / gpn - 1e-9)
        parts["serving"] = (
            pk.in_use + extra,
            f"serving wants {obs.serving_gpus:g} more GPUs: {extra} node(s) beyond {pk.in_use} in use",
        )
    ready = sum(1 for n in obs.nodes if n.state == "ready")
    busy_not_ready = pk.busy - pk.busy_ready
    # CPU only (the setting is target_cpu_utilization): fully allocated GPUs are what a batch
    # cluster is for, and GPU growth is driven by the gangs that wait, not by headroom.
    for name, util in (("CPU", obs.cpu_utilization),):
        if util is not None and ready and util > prm.target_cpu_utilization:
            n = busy_not_ready + math.ceil(ready * util / prm.target_cpu_utilization - 1e-9)
            if n > parts.get("utilization", (0, ""))[0]:
                parts["utilization"] = (
                    n,
                    f"{name} utilisation {util:g}% > target "
                    f"{prm.target_cpu_utilization:g}% on {ready} "
                    f"ready node(s): {n} nodes",
                )
    return parts


_TIE_ORDER = ("queue", "serving", "utilization", "in_use")


def _best(parts: Mapping[str, tuple[int, str]]) -> tuple[int, str, str]:
    name = max(parts, key=lambda k: (parts[k][0], -_TIE_ORDER.index(k)))
    return parts[name][0], name, parts[name][1]


def reactive(
    pool: PoolSpec,
    obs: PoolObservation,
    history: Sequence[HistoryPoint],
    state: Optional[PoolState],
    now: float,
) -> tuple[int, str, str]:
    """Nodes the current demand needs: max of packing the pending gangs, utilisation above
    target, queue depth, serving's extra GPUs, and the nodes running work. With nothing pending
    it may be below the pool's size (trigger ``idle``): idle nodes may then go."""
    return _reactive_of(_reactive_parts(pool, obs), obs)


def _reactive_of(parts: Mapping[str, tuple[int, str]], obs: PoolObservation) -> tuple[int, str, str]:
    n, trigger, reason = _best(parts)
    if trigger == "in_use" and n < len(obs.nodes):
        return n, "idle", f"nothing pending; {reason} of {len(obs.nodes)}"
    return n, trigger, reason


def predictive(
    pool: PoolSpec,
    obs: PoolObservation,
    history: Sequence[HistoryPoint],
    state: Optional[PoolState],
    now: float,
) -> tuple[int, str, str]:
    """Seasonal forecast for ``now + predictive_lead_s`` from this pool's history."""
    prm = pool.params
    points = (p for p in history if p.pool == pool.name)
    n, why = seasonal_forecast(points, now + prm.predictive_lead_s, now, prm.lookback_s)
    return (n or 0), "forecast", f"forecast in {prm.predictive_lead_s / 60:g}m: {why}"


def schedule(
    pool: PoolSpec,
    obs: PoolObservation,
    history: Sequence[HistoryPoint],
    state: Optional[PoolState],
    now: float,
) -> tuple[int, str, str]:
    """The largest ``size`` of the schedule windows open at ``now``; 0 if none is open."""
    best, why = 0, "no schedule window open"
    for w in pool.schedule:
        if w.size > best and w.is_open(now):
            best, why = w.size, f"window {w.cron!r} ({w.duration_s / 3600:g}h) open: {w.size} nodes"
    return best, "schedule", why


def hybrid(
    pool: PoolSpec,
    obs: PoolObservation,
    history: Sequence[HistoryPoint],
    state: Optional[PoolState],
    now: float,
) -> tuple[int, str, str]:
    """Max of reactive, predictive (only if ``predictive_enabled``) and schedule."""
    parts = [reactive(pool, obs, history, state, now)]
    if pool.params.predictive_enabled:
        parts.append(predictive(pool, obs, history, state, now))
    parts.append(schedule(pool, obs, history, state, now))
    return max(parts, key=lambda p: p[0])  # first of equals: reactive explains best


# -- decide ---------------------------------------------------------------------------------------
def decide(ctx: AutoscaleContext, state: AutoscaleState, now: float) -> tuple[Decision, AutoscaleState]:
    """One decision for every pool of ``ctx`` at ``now``; a new state (the inputs are not
    mutated). See :func:`_decide_pool` for the rules."""
    by_pool: dict[str, list[HistoryPoint]] = {}
    for p in ctx.history:  # one pass, not one per pool
        by_pool.setdefault(p.pool, []).append(p)
    new_state = AutoscaleState(
        {k: PoolState(v.last_up_at, v.last_down_at, v.target) for k, v in state.pools.items()}
    )
    out = []
    for pool in ctx.pools:
        obs = ctx.observations.get(pool.name) or PoolObservation(pool.name)
        ps = new_state.pools.setdefault(pool.name, PoolState())
        out.append(_decide_pool(pool, obs, by_pool.get(pool.name, []), ps, now))
    return Decision(tuple(out), now), new_state


def _wanted(
    pool: PoolSpec, obs: PoolObservation, history: list[Any], now: float
) -> tuple[int, str, str, dict[str, int], int]:
    """The policy's size before bounds: ``(n, trigger, reason, candidates, queue_part)``.

    ``queue_part`` is what queued work alone needs (exempt from the scale-up cooldown); only
    policies that include reactive react to the queue."""
    parts = _reactive_parts(pool, obs)
    r = _reactive_of(parts, obs)
    cands = {"reactive": r[0]}
    chosen = [r] if pool.policy in ("reactive", "hybrid") else []
    if pool.policy == "predictive" or (pool.policy == "hybrid" and pool.params.predictive_enabled):
        p = predictive(pool, obs, history, None, now)
        cands["predictive"] = p[0]
        chosen.append(p)
    if pool.policy in ("schedule", "hybrid"):
        s = schedule(pool, obs, history, None, now)
        cands["schedule"] = s[0]
        chosen.append(s)
    n, trigger, reason = max(chosen, key=lambda c: c[0])
    in_use = parts["in_use"][0]
    if n < in_use:  # predictive/schedule alone: never below the nodes running work
        n, trigger, reason = in_use, "in_use", parts["in_use"][1]
    queue_part = parts["queue"][0] if "queue" in parts and pool.policy in ("reactive", "hybrid") else 0
    return n, trigger, reason, cands, queue_part


def _releasable(n: NodeSample, now: float, idle_s: float) -> bool:
    if n.running > 0:
        return False
    if n.state == "drained":
        return True
    return n.idle_since is not None and now - n.idle_since >= idle_s


def _free_share(n: NodeSample) -> float:
    shares = [min(1.0, n.free.get(k, 0.0) / v) for k, v in n.total.items() if v > 0]
    return sum(shares) / len(shares) if shares else 1.0


def _decide_pool(
    pool: PoolSpec, obs: PoolObservation, history: list[Any], ps: PoolState, now: float
) -> PoolDecision:
    """Wanted size -> floor at nodes running work -> clamp to [min, max] -> cooldowns ->
    which nodes can really go. ``ps`` is this decision's own copy and is updated in place.

    Cooldowns limit *new* changes of the requested size (``prev``: the last target, else what
    is requested from Ray, else the current size). Carrying out a change already decided (nodes
    still provisioning, or still being released) is not held, so a held decision never cancels
    nodes in flight. The scale-up cooldown does not hold what queued work needs: a gang must
    never wait a cooldown for its first node request; utilisation, forecast, schedule and
    serving increases are the ones that overshoot and are held. The bounds are not held either:
    min_size and max_size are configuration, not a reaction to load.

    ``current`` counts every node sample of the pool, drained ones too (they exist until
    released, and are released first); provisioning nodes have no sample yet.
    """
    prm = pool.params
    nodes = obs.nodes
    current = len(nodes)
    want, trigger, reason, cands, queue_part = _wanted(pool, obs, history, now)
    target = want
    if want < pool.min_size:
        target, trigger, reason = pool.min_size, "min_size", f"{reason}; min_size {pool.min_size}"
    elif want > pool.max_size:
        target, trigger = pool.max_size, "max_size"
        reason = f"{reason}; capped at max_size {pool.max_size}"
    prev = ps.target if ps.target is not None else (obs.requested or current)
    held = False
    since_up = now - ps.last_up_at if ps.last_up_at is not None else math.inf
    last_change = max(x for x in (ps.last_up_at, ps.last_down_at, -math.inf) if x is not None)
    if target > max(current, prev) and since_up < prm.scale_up_cooldown_s:
        allowed = max(current, min(prev, pool.max_size), min(queue_part, target), pool.min_size)
        if allowed < target:
            held = True
            if allowed <= max(current, prev):
                trigger = "cooldown"
            elif allowed == min(queue_part, target):  # queued work goes through, the rest waits
                trigger = "queue"
            else:
                trigger = "min_size"
            reason = (
                f"{reason}; held at {allowed} by scale-up cooldown "
                f"({since_up:.0f}s of {prm.scale_up_cooldown_s:g}s)"
            )
            target = allowed
    if target < min(current, prev) and now - last_change < prm.scale_down_cooldown_s:
        allowed = min(current, prev, pool.max_size)
        if allowed > target:
            held = True
            reason = (
                f"{reason}; held at {allowed} by scale-down cooldown "
                f"({now - last_change:.0f}s of {prm.scale_down_cooldown_s:g}s)"
            )
            trigger, target = "cooldown", allowed
    release: tuple[Any, ...] = ()
    if target < current:
        can_go = sorted(
            (n for n in nodes if _releasable(n, now, prm.idle_s)),
            key=lambda n: (n.state != "drained", -_free_share(n), -n.fragmentation, n.node_id),
        )
        go = can_go[: current - target]
        if len(go) < current - target:
            reason = (
                f"{reason}; only {len(go)} of {current - target} node(s) can go "
                f"(the others run work or are idle < {prm.idle_s:g}s)"
            )
            target = current - len(go)
        release = tuple(n.node_id for n in go)
    direction = "up" if target > current else "down" if target < current else "none"
    if target > max(current, prev):
        ps.last_up_at = now
    elif target < min(current, prev):
        ps.last_down_at = now
    # Recorded every decision, not only on up/down: the actor actuates each one, and the next
    # cooldown check compares against what is really requested.
    ps.target = target
    return PoolDecision(
        pool.name,
        pool.policy,
        current,
        target,
        direction,
        trigger,
        reason,
        release,
        cands,
        held,
        dict(pool.node_resources),
        dict(pool.labels),
    )


def record_point(ctx: AutoscaleContext, decision: Decision, now: float) -> list[HistoryPoint]:
    """History to store for the next forecasts: per pool, reactive's demand before clamping."""
    out = []
    for d in decision.pools:
        needed = d.candidates.get("reactive")
        if needed is None:
            pool = next(p for p in ctx.pools if p.name == d.pool)
            obs = ctx.observations.get(d.pool) or PoolObservation(d.pool)
            needed = reactive(pool, obs, (), None, now)[0]
        out.append(HistoryPoint(now, d.pool, float(needed)))
    return out
