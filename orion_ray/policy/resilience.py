"""Resilience policy: a circuit breaker per version and stuck-deployment detection. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class Breaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown_s`` lets ``probes``
    requests through (half-open): a success closes it, a failure opens it again."""

    threshold: int = 5
    cooldown_s: float = 5.0
    probes: int = 1
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    in_flight: int = 0

    def allows(self, now: float) -> bool:
        """Whether a request may go to this version now (without taking a probe slot)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now - self.opened_at >= self.cooldown_s
        return self.in_flight < self.probes

    def admit(self, now: float) -> "Breaker":
        """The breaker after a request was let through (an open breaker past its cooldown turns
        half-open, and each half-open request takes a probe slot)."""
        if self.state == OPEN and now - self.opened_at >= self.cooldown_s:
            return replace(self, state=HALF_OPEN, in_flight=1)
        if self.state == HALF_OPEN:
            return replace(self, in_flight=self.in_flight + 1)
        return self

    def record(self, ok: bool, now: float) -> "Breaker":
        """The breaker after a request's outcome."""
        if ok:
            return replace(self, state=CLOSED, failures=0, in_flight=0)
        failures = self.failures + 1
        if self.state == HALF_OPEN or failures >= self.threshold:
            return replace(self, state=OPEN, failures=failures, opened_at=now, in_flight=0)
        return replace(self, failures=failures)


@dataclass(frozen=True)
class DeploymentHealth:
    """What stuck detection needs to know of one deployment."""

    deployment_id: str
    healthy: bool
    since: float  # when it was (re)deployed
    deadline_s: float


def stuck(deployments: Iterable[DeploymentHealth], now: float) -> list[str]:
    """Deployments that are not healthy past their deadline (to be restarted and reported)."""
    return sorted(d.deployment_id for d in deployments if not d.healthy and now - d.since > d.deadline_s)


def gpu_totals(replicas: Mapping[str, tuple[str, int, float]]) -> dict[str, float]:
    """GPUs held per tenant from ``{deployment_id: (tenant, replicas, gpus_per_replica)}``
    (tenants holding none are left out)."""
    out: dict[str, float] = {}
    for tenant, n, gpus in replicas.values():
        if n * gpus > 0:
            out[tenant] = out.get(tenant, 0.0) + n * gpus
    return out
