"""A rolling release driven on a live model: the manager's side of ``policy/rollout.py``.

Each version is its own Serve application, so "replacing replicas" is two replica counts moving
against each other: the candidate's application scaled up by what ``maxSurge`` allows, the
stable's scaled down by what the ready replicas allow (``maxUnavailable``), traffic weighted by
the ready replicas. Completed, the candidate keeps the desired count (or its own autoscaling) and
takes the model's base URL if the stable version held it, and the stable version is scaled to
zero (kept deployed, so a rollback has it); rolled back, the stable version gets its own settings
back and the candidate is scaled to zero.

The rollout's state is kept in the release record (``rel["rollout"]``), saved with the manager's.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Optional

from ..policy import rollout, traffic
from ..serving_specs import Autoscaling, DeploymentSpec, ReleaseSpec, deployment_id
from .scaling_events import ROLLOUT

if TYPE_CHECKING:
    from .manager import DeploymentManager


RETIRED_IDLE_S = 30.0  # a version at zero that a stray request woke goes back to zero this soon


def sized(spec: DeploymentSpec, n: int) -> DeploymentSpec:
    """``spec`` with ``n`` fixed replicas; zero is an autoscaling range 0..1 starting at 0 (a
    valid spec, and one Serve holds no replica for while no traffic comes), idle for
    ``RETIRED_IDLE_S`` at most: with Serve's default delay (600 s) a replaced version kept its
    last replica ten minutes after the release."""
    if n >= 1:
        return spec.model_copy(update={"replicas": n, "autoscaling": None})
    zero = Autoscaling(min_replicas=0, max_replicas=1, initial_replicas=0, downscale_delay=RETIRED_IDLE_S)
    return spec.model_copy(update={"replicas": None, "autoscaling": zero})


def _desired(rec: dict) -> int:
    """Replicas the model runs now on its stable version (its count, or what its autoscaler
    runs, at least one)."""
    spec: DeploymentSpec = rec["spec"]
    if spec.autoscaling is None:
        return spec.replicas if spec.replicas is not None else 1
    a = spec.autoscaling
    start = a.initial_replicas if a.initial_replicas is not None else a.min_replicas
    return max(1, rec.get("running", 0), start)


def _observed(rec: dict) -> rollout.Observed:
    ready = int(rec.get("running", 0)) if rec.get("status") in ("healthy", "deploying") else 0
    return rollout.Observed(alive=int(rec.get("alive", rec.get("running", 0))), ready=ready)


def _recs(mgr: "DeploymentManager", spec: ReleaseSpec) -> tuple[dict, dict]:
    assert spec.candidate is not None  # a rolling release names its candidate (the spec checks)
    return (
        mgr._get(deployment_id(spec.model_id, spec.stable)),
        mgr._get(deployment_id(spec.model_id, spec.candidate)),
    )


def resize(
    mgr: "DeploymentManager", rec: dict, n: int, why: str, spec: Optional[DeploymentSpec] = None
) -> None:
    """Ask Serve for ``n`` replicas of a deployment (or for ``spec`` as given), as a scaling event
    triggered by the rollout."""
    old: DeploymentSpec = rec["spec"]
    new = spec if spec is not None else sized(old, n)
    before = rec.get("target", old.replicas if old.autoscaling is None else rec.get("running", 0))
    mgr._make_room(new, n - int(before or 0))
    mgr._deploy(new, rec["nonce"], rec.get("front", False))
    rec["spec"] = new
    mgr.scaling.requested(
        old.id, old.model_id, trigger=ROLLOUT, before=before, after=n, reason=why, now=mgr.clock()
    )
    rec["target"] = n


def begin(mgr: "DeploymentManager", spec: ReleaseSpec, now: float) -> tuple[traffic.ReleaseState, list, dict]:
    """Start a rolling release: the state, its events and the rollout record to keep."""
    assert spec.rolling is not None and spec.candidate is not None
    old_rec, new_rec = _recs(mgr, spec)
    desired = _desired(old_rec)
    already = int(new_rec.get("running", 0))
    r = rollout.start(
        desired,
        spec.rolling.max_surge,
        spec.rolling.max_unavailable,
        spec.rolling.progress_deadline,
        now,
        new_target=already,
    )
    record = {
        "state": asdict(r),
        "original": {
            "stable": old_rec["spec"].model_dump(mode="json"),
            "candidate": new_rec["spec"].model_dump(mode="json"),
        },
    }
    resize(mgr, new_rec, r.new_target, f"rolling release of {spec.candidate}: surge {r.surge}")
    w = {spec.stable: 100.0, spec.candidate: 0.0}
    msg = (
        f"rolling: replacing {desired} replica(s) of {spec.stable} with {spec.candidate} "
        f"(surge {r.surge}, unavailable {r.unavailable}, progressDeadline {r.deadline:g}s)"
    )
    return (
        traffic.ReleaseState(traffic.RUNNING, w, 0, now),
        [traffic.Event(now, spec.model_id, "started", msg, w)],
        record,
    )


def drive(mgr: "DeploymentManager", rel: dict, now: float) -> bool:
    """One tick of a rolling release; True when something changed (to be saved)."""
    spec: ReleaseSpec = rel["spec"]
    state: traffic.ReleaseState = rel["state"]
    if state.phase != traffic.RUNNING or "rollout" not in rel:
        return False
    assert spec.candidate is not None
    r = rollout.Rollout(**rel["rollout"]["state"])
    old_rec, new_rec = _recs(mgr, spec)
    old, new = _observed(old_rec), _observed(new_rec)
    why = traffic.verdict(spec, mgr._stats(spec.model_id, spec.candidate, state.since))
    if why is not None and spec.rollback_on_error:
        nxt = rollout.rollback(r, f"success criteria failed: {why}")
    else:
        nxt = rollout.step(r, old, new, now)
    return _apply(mgr, rel, r, nxt, now)


def operator_rollback(mgr: "DeploymentManager", rel: dict, now: float, why: str) -> None:
    """An operator's rollback of a rolling release under way: the replicas go back too."""
    r = rollout.Rollout(**rel["rollout"]["state"])
    if r.phase == rollout.ROLLING:
        _apply(mgr, rel, r, rollout.rollback(r, why), now)


def _apply(mgr: "DeploymentManager", rel: dict, r: rollout.Rollout, nxt: rollout.Rollout, now: float) -> bool:
    """Ask Serve for the replica counts of ``nxt``, set the weights and record what happened."""
    spec: ReleaseSpec = rel["spec"]
    state: traffic.ReleaseState = rel["state"]
    assert spec.candidate is not None
    old_rec, new_rec = _recs(mgr, spec)
    old, new = _observed(old_rec), _observed(new_rec)
    original = rel["rollout"]["original"]
    if nxt.phase == rollout.COMPLETE:
        cand = DeploymentSpec.model_validate(original["candidate"])
        final = cand if cand.autoscaling is not None else sized(cand, nxt.desired)
        if final != new_rec["spec"]:
            resize(mgr, new_rec, nxt.desired, "rolling release complete", spec=final)
        # the promoted version takes the base URL: the old one, at 0..1 replicas, would
        # otherwise take every request there with a cold start and forward it (one hop more)
        moves = bool(old_rec.get("front")) and not new_rec.get("front")
        if moves:
            old_rec["front"] = False  # redeployed below without the route, which frees it
        try:
            resize(mgr, old_rec, 0, f"replaced by {spec.candidate}")
        except Exception:  # Serve still routes to it: the next tick tries the same again
            old_rec["front"] = old_rec["front"] or moves
            raise
        if moves:
            mgr.take_front(new_rec, old_rec)
    elif nxt.phase == rollout.ROLLED_BACK:
        stable = DeploymentSpec.model_validate(original["stable"])
        resize(mgr, old_rec, nxt.desired, f"rollback: {nxt.reason}", spec=stable)
        resize(mgr, new_rec, 0, f"rollback: {nxt.reason}")
    else:
        if nxt.new_target != r.new_target:
            resize(mgr, new_rec, nxt.new_target, f"rolling: {spec.candidate} up to {nxt.new_target}")
        if nxt.old_target != r.old_target:
            resize(mgr, old_rec, nxt.old_target, f"rolling: {spec.stable} down to {nxt.old_target}")
    w = rollout.weights(spec.stable, spec.candidate, old, new, nxt)
    phase = {rollout.COMPLETE: traffic.PROMOTED, rollout.ROLLED_BACK: traffic.ROLLED_BACK}.get(
        nxt.phase, traffic.RUNNING
    )
    events: list[traffic.Event] = []
    if phase == traffic.PROMOTED:
        events.append(traffic.Event(now, spec.model_id, "promoted", f"{spec.candidate}: {nxt.reason}", w))
    elif phase == traffic.ROLLED_BACK:
        events.append(traffic.Event(now, spec.model_id, "rolled_back", f"{spec.candidate}: {nxt.reason}", w))
    elif (nxt.old_target, nxt.new_target) != (r.old_target, r.new_target):
        events.append(
            traffic.Event(
                now,
                spec.model_id,
                "advanced",
                f"rolling: {spec.stable} {nxt.old_target}, {spec.candidate} {nxt.new_target} replica(s)",
                w,
            )
        )
    changed = nxt != r or dict(w) != dict(state.weights) or phase != state.phase
    rel["state"] = traffic.ReleaseState(
        phase, w, state.step, now if phase != traffic.RUNNING else state.since
    )
    rel["rollout"]["state"] = asdict(nxt)
    mgr._record(events)
    return changed
