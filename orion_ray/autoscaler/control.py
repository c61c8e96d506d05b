"""The autoscaler's control loop: observe, decide (pure), actuate, record. It never dies.

Each step:
1. observe — the scheduler's view (nodes with their work and free capacity, queued gangs waiting
   for capacity), the Ray autoscaler's state (pending and failed launches, Ray's own pending
   placement groups) and the demand history;
2. decide — ``policy.autoscaling.decide(context, state, now)``, pure, per pool;
3. actuate — the whole-node bundles of every pool's target go to the Ray autoscaler as one request
   (a floor it keeps); nodes chosen for release are drained through the scheduler (they run
   nothing, so they are drained at once and take no new work) and the Ray autoscaler removes them
   when idle; a pool growing again gets its released nodes back first;
4. record — each change of a pool's target is a scaling event whose outcome (fulfilled, superseded,
   timed out) is filled in when known; the decision state is checkpointed in the store; a demand
   sample is added to the history every ``history_every_s``; a status report goes to the scheduler
   (the infrastructure API reads it there).

Everything external is passed in: ``source`` (the scheduler), ``capacity`` (``RayCapacity``),
``store`` and ``clock``, so tests drive a step with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from ..policy.autoscaling import (
    AutoscaleContext,
    AutoscaleState,
    HistoryPoint,
    NodeSample,
    PendingGang,
    PoolObservation,
    PoolSpec,
    assign_pending,
    decide,
    record_point,
)

log = logging.getLogger("orion.autoscaler")

STATE_SETTING = "autoscaler_state"
EVENT_TIMEOUT_S = 900.0  # a scale-up not met within the launch budget is recorded as timed out
TELEMETRY_EVERY_S = 15.0


class AutoscalerLoop:
    """One autoscaler: ``await step()`` once, or ``await run()`` forever."""

    def __init__(
        self,
        pools: list[PoolSpec],
        source: Any,
        capacity: Any,
        store: Any,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
        history_every_s: float = 60.0,
        node_types: Optional[dict[str, str]] = None,
        on_nodes: Optional[Callable[[list[dict]], None]] = None,
        pool_swap: Optional[Any] = None,
    ):
        self.pools = list(pools)
        self.source = source
        self.capacity = capacity
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self.history_every_s = history_every_s
        self.node_types = dict(node_types or {p.name: p.name for p in self.pools})
        saved = store.get_setting(STATE_SETTING, None)
        self.state = AutoscaleState.from_dict(saved) if saved else AutoscaleState()
        self.released: dict[str, float] = dict((saved or {}).get("_released", {}))
        self.open_events: dict[str, dict] = {}
        self.last_request: Optional[tuple] = None
        self.last_decision: Optional[Any] = None
        self.last_status: dict[str, Any] = {}
        self.last_error: Optional[str] = None
        self.steps = 0
        self._history_at = 0.0
        self._history: list[HistoryPoint] = []
        self._history_loaded = -1e18
        self._telemetry: dict[str, dict] = {}
        self._telemetry_at = -1e18
        self._failed_seen: set = set()
        self._stopping = False
        self.on_nodes = on_nodes  # e.g. start spot-notice watchers on new spot nodes
        self.pool_swap = pool_swap  # pools a config snapshot sets (pool_swap.py)

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Step every ``interval_s`` until ``stop()``; an error is logged and the next step runs."""
        while not self._stopping:
            started = time.monotonic()
            try:
                await self.step()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop never dies (like Serve's controllers)
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("autoscaler step failed")
            await asyncio.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stopping = True

    async def step(self) -> dict[str, Any]:
        """One observe → decide → actuate → record pass; returns the status report."""
        now = self.clock()
        # Ray's demand first, Orion's view second: a gang Orion places in between is then queued
        # in neither or starting with its group known (and left out of Ray's demand), never
        # counted once as queued and again as Ray's pending group
        try:
            ray_state = await asyncio.to_thread(self.capacity.status)
        except Exception as exc:  # the Ray autoscaler may be absent (a static cluster)
            ray_state = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        view = await self.source.autoscaler_view()
        if self.pool_swap is not None:
            self.pools, self.node_types = self.pool_swap.update(
                view.get("pools_config"), self.pools, self.node_types
            )
        if self.on_nodes is not None:
            try:
                await asyncio.to_thread(self.on_nodes, view.get("nodes", []))
            except Exception:
                log.warning("node hook failed", exc_info=True)
        ctx, orion_gangs = self._context(view, ray_state, now)
        decision, self.state = decide(ctx, self.state, now)
        self.last_decision = decision
        await self._actuate(decision, view, now)
        self._record(decision, ctx, ray_state, now)
        self.steps += 1
        status = await self._report(decision, ctx, view, ray_state, orion_gangs, now)
        return status

    # -- observe ---------------------------------------------------------------------------------
    def _pool_of(self, sample: dict, node_types: dict) -> Optional[str]:
        if sample.get("pool"):
            return sample["pool"]
        rtype = node_types.get(sample["node_id"])
        for pool, t in self.node_types.items():
            if rtype is not None and t == rtype:
                return pool
        return None

    def _context(self, view: dict, ray_state: dict, now: float):
        node_types = ray_state.get("node_types") or {}
        by_pool: dict[str, list[NodeSample]] = {p.name: [] for p in self.pools}
        for s in view.get("nodes", []):
            pool = self._pool_of(s, node_types)
            if pool not in by_pool:
                continue
            by_pool[pool].append(
                NodeSample(
                    node_id=s["node_id"],
                    pool=pool,
                    total=dict(s["total"]),
                    free=dict(s["free"]),
                    running=int(s["running"]),
                    state=_sample_state(s, self.released),
                    idle_since=s.get("idle_since"),
                    fragmentation=float(s.get("fragmentation", 0.0)),
                )
            )
        gangs = [
            PendingGang(
                bundles=tuple(dict(b) for b in g["bundles"]),
                strategy=g.get("strategy") or "PACK",
                pool=g.get("pool"),
                gpu_type=next((t for t in g.get("gpu_types") or [] if t), None),
                source="orion",
            )
            for g in view.get("pending", [])
        ]
        orion_gangs = list(gangs)
        own = set(view.get("own_groups") or ())
        ids = {
            id(g): p["workload_id"] for g, p in zip(gangs, view.get("pending", [])) if p.get("workload_id")
        }
        gangs += [
            PendingGang(
                bundles=tuple(dict(b) for b in g["bundles"]),
                strategy=g.get("strategy") or "PACK",
                pool=None,
                gpu_type=None,
                source="ray",
            )
            for g in ray_state.get("ray_pending", [])
            if g.get("bundles") and not (g.get("pg_id") and g["pg_id"] in own)
        ]
        assigned = assign_pending(self.pools, gangs)
        observations = {}
        for p in self.pools:
            nodes = by_pool[p.name]
            pending = tuple(assigned.get(p.name, []))
            observations[p.name] = PoolObservation(
                pool=p.name,
                nodes=tuple(nodes),
                pending=pending,
                queue_depth=sum(1 for g in pending if g.source == "orion"),
                cpu_utilization=_utilisation(nodes, "CPU"),
                gpu_utilization=_measured_gpu(nodes, self._telemetry)
                if _measured_gpu(nodes, self._telemetry) is not None
                else _utilisation(nodes, "GPU"),
                requested=getattr(self.state.pools.get(p.name), "target", None) or 0,
            )
        self._unplaceable = assigned.get("", [])
        # which queued workload waits on which pool ("" for none), for explain
        self._waiting = {ids[id(g)]: pool for pool, gs in assigned.items() for g in gs if id(g) in ids}
        return AutoscaleContext(
            pools=tuple(self.pools), observations=observations, history=tuple(self._load_history(now))
        ), orion_gangs

    def _load_history(self, now: float) -> list[HistoryPoint]:
        if now - self._history_loaded > self.history_every_s:
            self._history_loaded = now
            lookback = max((p.params.lookback_s for p in self.pools), default=0.0)
            try:
                rows = self.store.history_since(now - lookback)
                self._history = [HistoryPoint(at=a, pool=p, nodes_needed=n) for a, p, n in rows]
            except Exception:
                log.warning("demand history not read", exc_info=True)
        return self._history

    # -- actuate ---------------------------------------------------------------------------------
    async def _actuate(self, decision, view: dict, now: float) -> None:
        bundles, selectors = decision.request_bundles()
        key = (repr(bundles), repr(selectors))
        if key != self.last_request:
            await asyncio.to_thread(self.capacity.request, bundles, selectors)
            self.last_request = key
        alive = {s["node_id"] for s in view.get("nodes", [])}
        self.released = {n: at for n, at in self.released.items() if n in alive}
        for d in decision.pools:
            for node in d.release:
                if node in self.released:
                    continue
                try:  # cordoned first, so nothing lands on it while it goes
                    await self.source.drain(
                        node, "autoscaler", 0.0, f"scale-down of pool {d.pool}: {d.reason}"[:300]
                    )
                    self.released[node] = now
                except Exception as exc:
                    log.warning("could not release node %s: %s", node, exc)
                    continue
                if hasattr(self.capacity, "release"):
                    try:  # refused if it got busy meanwhile: Ray's idle timeout then decides
                        ok, why = await asyncio.to_thread(self.capacity.release, node)
                        if not ok:
                            log.info("Ray kept node %s: %s", node, why)
                    except Exception as exc:
                        log.warning("Ray did not release node %s: %s", node, exc)
            # growing again, or holding steady: nodes given back but not yet gone return to work
            if d.direction != "down":
                mine = [
                    s
                    for s in view.get("nodes", [])
                    if s["node_id"] in self.released and (s.get("pool") == d.pool)
                ]
                keep = max(0, d.current - d.target) if d.direction == "none" else 0
                for s in mine[keep:]:
                    try:
                        await self.source.uncordon(s["node_id"], "autoscaler")
                        self.released.pop(s["node_id"], None)
                    except Exception as exc:
                        log.warning("could not take node %s back: %s", s["node_id"], exc)

    # -- record ----------------------------------------------------------------------------------
    def _record(self, decision, ctx, ray_state: dict, now: float) -> None:
        for d in decision.pools:
            obs = ctx.observations[d.pool]
            ready = sum(1 for n in obs.nodes if n.state in ("ready", "cordoned", "draining", "drained"))
            ev = self.open_events.get(d.pool)
            if ev is not None:
                done = (ready >= ev["after"]) if ev["direction"] == "up" else (ready <= ev["after"])
                if done:
                    self._close(d.pool, "fulfilled", now, nodes=ready)
                elif now - ev["at"] > EVENT_TIMEOUT_S:
                    self._close(d.pool, "timed_out", now, nodes=ready)
            if d.direction in ("up", "down"):
                if d.pool in self.open_events:
                    self._close(d.pool, "superseded", now, nodes=ready)
                event = {
                    "at": now,
                    "kind": f"scale_{d.direction}",
                    "pool": d.pool,
                    "trigger": d.trigger,
                    "reason": d.reason,
                    "before": d.current,
                    "after": d.target,
                    "outcome": "requested",
                    "policy": d.policy,
                    "candidates": dict(d.candidates),
                    "release": list(d.release),
                }
                eid = self.store.add_scaling_event(event)
                self.open_events[d.pool] = {"id": eid, "at": now, "after": d.target, "direction": d.direction}
        for f in ray_state.get("failed_launches") or []:
            key = (f.get("node_type"), f.get("at"), f.get("details"))
            if key in self._failed_seen:
                continue
            self._failed_seen.add(key)
            pool = next((p for p, t in self.node_types.items() if t == f.get("node_type")), None)
            self.store.add_scaling_event(
                {
                    "at": now,
                    "kind": "launch_failed",
                    "pool": pool,
                    "trigger": "ray_autoscaler",
                    "outcome": "failed",
                    "reason": (f.get("details") or "launch failed")[:2000],
                    "node_type": f.get("node_type"),
                    "count": f.get("count"),
                }
            )
        if now - self._history_at >= self.history_every_s:
            self._history_at = now
            points = record_point(ctx, decision, now)
            if points:
                lookback = max((p.params.lookback_s for p in self.pools), default=0.0)
                self.store.add_history([(p.at, p.pool, p.nodes_needed) for p in points], now - lookback)
        saved = self.state.to_dict()
        saved["_released"] = dict(self.released)
        self.store.put_setting(STATE_SETTING, saved)

    def _close(self, pool: str, outcome: str, now: float, **details) -> None:
        ev = self.open_events.pop(pool)
        self.store.update_scaling_event(ev["id"], outcome, round(now - ev["at"], 3), **details)

    async def _report(self, decision, ctx, view, ray_state, orion_gangs, now) -> dict[str, Any]:
        if now - self._telemetry_at > TELEMETRY_EVERY_S and hasattr(self.capacity, "gpu_telemetry"):
            self._telemetry_at = now
            # A node is probed when first seen; after that only if it has a device and work
            # (a probe task on an idle node must not keep the Ray autoscaler from releasing it,
            # and a node without an NVIDIA device does not grow one).
            alive = {s["node_id"]: s for s in view.get("nodes", []) if s["total"].get("GPU")}
            self._telemetry = {n: t for n, t in self._telemetry.items() if n in alive}
            probe = [
                n
                for n, s in alive.items()
                if n not in self._telemetry or (self._telemetry[n].get("status") == "ok" and s.get("running"))
            ]
            if probe:
                try:
                    got = await asyncio.to_thread(self.capacity.gpu_telemetry, probe)
                except Exception as exc:
                    got = {n: {"status": "unavailable", "reason": str(exc)[:300]} for n in probe}
                self._telemetry.update(got)
        pools = []
        pending = ray_state.get("pending_launches") or {}
        failures = {}
        for f in ray_state.get("failed_launches") or []:
            pool = next((p for p, t in self.node_types.items() if t == f.get("node_type")), None)
            at = float(f.get("at") or now)
            if pool is not None and at >= failures.get(pool, {}).get("at", -1):
                failures[pool] = {
                    "at": at,
                    "details": (f.get("details") or "")[:1000],
                    "count": f.get("count"),
                }
        specs = {p.name: p for p in self.pools}
        for d in decision.pools:
            obs = ctx.observations[d.pool]
            pools.append(
                {
                    "pool": d.pool,
                    "policy": d.policy,
                    "current": d.current,
                    "target": d.target,
                    "direction": d.direction,
                    "trigger": d.trigger,
                    "reason": d.reason,
                    "held_by_cooldown": d.held_by_cooldown,
                    "candidates": dict(d.candidates),
                    "provisioning": pending.get(self.node_types.get(d.pool, d.pool), 0),
                    "pending_gangs": len(obs.pending),
                    "last_failed_launch": failures.get(d.pool),
                    "spec": {
                        "node_resources": specs[d.pool].node_resources,
                        "labels": specs[d.pool].labels,
                        "min_size": specs[d.pool].min_size,
                        "max_size": specs[d.pool].max_size,
                    },
                    "released": sorted(n for n in self.released if any(s.node_id == n for s in obs.nodes)),
                }
            )
        self.last_status = {
            "at": now,
            "loop": "ok" if self.last_error is None else "error",
            "last_error": self.last_error,
            "steps": self.steps,
            "interval_s": self.interval_s,
            "pools": pools,
            "ray_autoscaler": "ok" if "error" not in ray_state else "unavailable",
            "ray_autoscaler_error": ray_state.get("error"),
            "unplaceable": [
                {
                    "bundles": list(g.bundles),
                    "strategy": g.strategy,
                    "gpu_type": g.gpu_type,
                    "source": g.source,
                }
                for g in getattr(self, "_unplaceable", [])
            ][:50],
            "failed_launches": (ray_state.get("failed_launches") or [])[-20:],
            "waiting": dict(getattr(self, "_waiting", {})),
            "gpu_telemetry": self._telemetry,
        }
        try:
            await self.source.autoscaler_report(self.last_status)
        except Exception:
            log.debug("report not delivered", exc_info=True)
        return self.last_status


def _utilisation(nodes: list[NodeSample], key: str) -> Optional[float]:
    """Allocated share of ``key`` over the pool's schedulable nodes, in percent."""
    total = sum(n.total.get(key, 0.0) for n in nodes if n.state == "ready")
    if total <= 0:
        return None
    free = sum(n.free.get(key, 0.0) for n in nodes if n.state == "ready")
    return round(100.0 * (total - free) / total, 3)


def _measured_gpu(nodes: list[NodeSample], telemetry: dict) -> Optional[float]:
    """Mean NVML utilisation over the pool's GPUs where a device reports (None: no device)."""
    pcts = [
        g["utilization_pct"]
        for n in nodes
        for g in (telemetry.get(n.node_id) or {}).get("gpus", [])
        if (telemetry.get(n.node_id) or {}).get("status") == "ok"
    ]
    return round(sum(pcts) / len(pcts), 3) if pcts else None


def _sample_state(s: dict, released: dict) -> str:
    """A node the autoscaler released counts as drained (release it first), even though the
    scheduler shows it cordoned."""
    st = s.get("state") or "ready"
    if s["node_id"] in released and s.get("running", 0) == 0:
        return "drained"
    return st
