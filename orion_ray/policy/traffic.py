"""Traffic policy for a model's versions: which version a request goes to, and how a release moves.

Pure: no Ray, no FastAPI, ``now`` and the random draw are arguments, and states are replaced, never
mutated. The router calls ``route``; the deployment manager calls ``evaluate`` on every tick with
the outcomes the routers reported, and records the events it returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Optional, Sequence

from ..serving_specs import ReleaseSpec

RUNNING = "running"  # a canary / rolling release advancing step by step
TESTING = "testing"  # blue-green: all traffic on the candidate, rollback still armed
STEADY = "steady"  # weighted / ab: nothing moves by itself
PROMOTED = "promoted"  # the candidate took all traffic
ROLLED_BACK = "rolled_back"  # the stable version took all traffic back
HELD = "held"  # criteria failed with rollback_on_error off: nothing moves until an operator acts


@dataclass(frozen=True)
class Stats:
    """Outcomes of one version over the current evaluation window."""

    requests: int = 0
    errors: int = 0
    latency_p95: Optional[float] = None  # seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @staticmethod
    def of(samples: Iterable[tuple[bool, float]]) -> "Stats":
        """From ``(ok, latency_s)`` samples."""
        samples = list(samples)
        if not samples:
            return Stats()
        lat = sorted(s[1] for s in samples)
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        return Stats(len(samples), sum(1 for ok, _ in samples if not ok), p95)


@dataclass(frozen=True)
class Event:
    """Something the release did (advanced, promoted, rolled back), with why."""

    at: float
    model_id: str
    kind: str
    message: str
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleaseState:
    """Where a release is: its phase, its current step and since when, and its live weights."""

    phase: str
    weights: Mapping[str, float]
    step: int = 0
    since: float = 0.0  # when the current step (or testing period) began


def start(spec: ReleaseSpec, now: float) -> tuple[ReleaseState, list[Event]]:
    """The state of a release just applied."""
    s = spec.strategy
    if s in ("canary", "rolling"):
        w = _split(spec, spec.steps[0].weight)
        state = ReleaseState(RUNNING, w, 0, now)
        return state, [
            Event(
                now,
                spec.model_id,
                "started",
                f"{s}: step 1/{len(spec.steps)}, {spec.candidate} at {spec.steps[0].weight:g}%",
                w,
            )
        ]
    if s == "blue-green":
        stable, cand = _versions(spec)
        w = {cand: 100.0, stable: 0.0}
        return ReleaseState(TESTING, w, 0, now), [
            Event(
                now,
                spec.model_id,
                "switched",
                f"blue-green: all traffic to {spec.candidate}; rollback armed for {spec.testing_period:g}s",
                w,
            )
        ]
    w = dict(spec.ab.variants) if s == "ab" and spec.ab is not None else dict(spec.weights)
    return ReleaseState(STEADY, w, 0, now), [Event(now, spec.model_id, "applied", f"{s}: {w}", w)]


def _split(spec: ReleaseSpec, candidate_weight: float) -> dict[str, float]:
    stable, cand = _versions(spec)
    return {stable: 100.0 - candidate_weight, cand: candidate_weight}


def _versions(spec: ReleaseSpec) -> tuple[str, str]:
    """(stable, candidate) of a canary, rolling or blue-green release (the spec requires both)."""
    if spec.stable is None or spec.candidate is None:
        raise ValueError(f"{spec.strategy} release of {spec.model_id} needs stable and candidate")
    return spec.stable, spec.candidate


def verdict(spec: ReleaseSpec, stats: Stats) -> Optional[str]:
    """Why ``stats`` fail the success criteria, or None when they hold (or are too few to judge)."""
    c = spec.success_criteria
    if stats.requests < c.min_requests:
        return None
    if stats.error_rate > c.error_rate:
        return f"error rate {stats.error_rate:.1%} over {c.error_rate:.1%} ({stats.requests} requests)"
    if c.latency_p95 is not None and stats.latency_p95 is not None and stats.latency_p95 > c.latency_p95:
        return f"latency p95 {stats.latency_p95 * 1000:.0f} ms over {c.latency_p95 * 1000:.0f} ms"
    return None


def evaluate(
    spec: ReleaseSpec, state: ReleaseState, candidate: Stats, now: float
) -> tuple[ReleaseState, list[Event]]:
    """One tick: roll back when the candidate fails, advance when its step has run its time with
    enough evidence, promote after the last step (or the blue-green testing period)."""
    if state.phase not in (RUNNING, TESTING):
        return state, []
    stable, cand = _versions(spec)
    why = verdict(spec, candidate)
    if why is not None and not spec.rollback_on_error:
        return (
            replace(state, phase=HELD, since=now),
            [
                Event(
                    now,
                    spec.model_id,
                    "held",
                    f"{spec.candidate}: {why} (rollback_on_error off)",
                    state.weights,
                )
            ],
        )
    if why is not None:
        w = {stable: 100.0, cand: 0.0}
        return (
            ReleaseState(ROLLED_BACK, w, state.step, now),
            [Event(now, spec.model_id, "rolled_back", f"{spec.candidate}: {why}", w)],
        )
    if state.phase == TESTING:
        if now - state.since < spec.testing_period:
            return state, []
        w = {cand: 100.0, stable: 0.0}
        return (
            ReleaseState(PROMOTED, w, state.step, now),
            [Event(now, spec.model_id, "promoted", f"{spec.candidate} held through the testing period", w)],
        )
    step = spec.steps[state.step]
    if now - state.since < step.duration:
        return state, []
    # a step with traffic needs enough requests to be judged before it advances
    if step.weight > 0 and candidate.requests < spec.success_criteria.min_requests:
        return state, []
    nxt = state.step + 1
    if nxt >= len(spec.steps) or step.weight >= 100:
        w = {cand: 100.0, stable: 0.0}
        return (
            ReleaseState(PROMOTED, w, state.step, now),
            [Event(now, spec.model_id, "promoted", f"{spec.candidate} passed every step", w)],
        )
    w = _split(spec, spec.steps[nxt].weight)
    return (
        ReleaseState(RUNNING, w, nxt, now),
        [
            Event(
                now,
                spec.model_id,
                "advanced",
                f"step {nxt + 1}/{len(spec.steps)}: {spec.candidate} at {spec.steps[nxt].weight:g}%",
                w,
            )
        ],
    )


def rollback(
    spec: ReleaseSpec, state: ReleaseState, now: float, why: str = "by request"
) -> tuple[ReleaseState, list[Event]]:
    """Send everything back to the stable version (an operator's rollback)."""
    w = {spec.stable: 100.0}
    if spec.candidate:
        w[spec.candidate] = 0.0
    return (
        replace(state, phase=ROLLED_BACK, weights=w, since=now),
        [Event(now, spec.model_id, "rolled_back", why, w)],
    )


def bucket(key: str, salt: str = "") -> float:
    """A stable draw in [0, 1) for a sticky key (the same user always lands in the same place)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(weights: Mapping[str, float], draw: float, allowed: Optional[Sequence[str]] = None) -> Optional[str]:
    """The version a draw in [0, 1) lands on, over the positive weights (in name order, so the
    same draw always means the same version); ``allowed`` leaves out versions (an open breaker)."""
    items = sorted((v, w) for v, w in weights.items() if w > 0 and (allowed is None or v in allowed))
    total = sum(w for _, w in items)
    if total <= 0:
        return None
    point = draw * total
    for v, w in items:
        if point < w:
            return v
        point -= w
    return items[-1][0]


def route(
    spec: ReleaseSpec,
    state: ReleaseState,
    draw: float,
    sticky_key: Optional[str] = None,
    allowed: Optional[Sequence[str]] = None,
) -> Optional[str]:
    """The version one request goes to. A/B uses the sticky key when the request has one."""
    if spec.strategy == "ab" and sticky_key:
        draw = bucket(sticky_key, spec.model_id)
    return pick(state.weights, draw, allowed)


def shadow_target(spec: ReleaseSpec, draw: float) -> Optional[str]:
    """The version a request is mirrored to, if this draw falls in the shadow's share."""
    if spec.shadow is None or draw * 100.0 >= spec.shadow.percent:
        return None
    return spec.shadow.version


def sticky_header(spec: ReleaseSpec) -> Optional[str]:
    """The header an A/B release reads its key from (lower case, as ASGI gives headers)."""
    return spec.ab.header.lower() if spec.strategy == "ab" and spec.ab else None
