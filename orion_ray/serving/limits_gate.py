"""Serving limits where the first hop runs: the API replica's ``/v1`` routes and inference
submissions, and a model's own base URL (``FirstHopLimits``; docs/serving-limits.md).

Each API replica holds one ``ServingLimiter`` (``policy/serving_limits.py``) with ``1/N`` of every
configured limit when Orion runs N API replicas (``orion.api.replicas``), refreshed with the key
ring (every few seconds, so ``orion reload`` reaches it). A request is checked before it is
routed; a refusal is a 429 ``rate_limited`` naming the limit, with ``Retry-After``. The prompt's
estimated tokens are charged up front and ``UsageGate`` settles the answer's real ``usage``
(a streaming answer's when its stream ends; a cache hit or a failed call gives the estimate back),
counts the tokens in Prometheus and hands them to the router, which reports them to the serving
manager for the durable usage records.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Optional

from ..errors import RateLimited
from ..policy.serving_limits import ALLOWED, ServingLimiter, Verdict, estimate_tokens
from ..serving_limits_config import ServingLimits

ADMIN = "admin"  # the label of the operator's own calls (never limited)


class ServingLimited(RateLimited):
    """A tenant over a serving limit; ``details[0].field`` names the limit."""


def limiter_of(state: Any) -> ServingLimiter:
    """The replica's limiter, made on first use (``state.api_replicas``: Orion's API replicas)."""
    lim = getattr(state, "serving_limiter", None)
    if lim is None:
        replicas = max(1, int(getattr(state, "api_replicas", 1) or 1))
        lim = state.serving_limiter = ServingLimiter(share=1.0 / replicas)
    return lim


def configure_from_ring(state: Any, ring: Mapping[str, Any]) -> None:
    """The tenants' serving limits from the key ring the scheduler persists."""
    raw = ring.get("serving_limits")
    if raw is None:  # a ring from before serving limits: keep what we have
        return
    limiter_of(state).configure({t: ServingLimits.model_validate(v) for t, v in raw.items()})


def refusal(tenant: str, verdict: Verdict) -> ServingLimited:
    """The 429 for a refused request: the limit's field path and value, and when to retry."""
    wait = max(1, math.ceil(verdict.retry_after))
    kind = (verdict.limit or "").rsplit(".", 1)[-1]
    unit = "requests a second" if kind == "requests_per_second" else "tokens a minute"
    return ServingLimited(
        f"tenant {tenant!r} is over its serving limit {verdict.limit} ({verdict.value:g} {unit}); "
        f"retry after {wait}s",
        [{"field": verdict.limit or "serving_limits", "problem": f"{verdict.value:g} {unit}"}],
        retry_after=wait,
    )


def admit(
    state: Any,
    tenant: Optional[str],
    model: str,
    body: Mapping[str, Any],
    *,
    extra_tokens: int = 0,
    now: Optional[float] = None,
) -> Verdict:
    """Check ``tenant``'s limits for one request to ``model`` (the admin is never limited);
    raises ``ServingLimited`` when refused. ``extra_tokens`` are charged beyond the prompt's
    estimate (an inference workload's ``max_tokens``: its answer is never settled here)."""
    if tenant is None:
        return ALLOWED
    lim = limiter_of(state)
    if not lim.limited(tenant):
        return ALLOWED
    tokens = estimate_tokens(body) + max(0, int(extra_tokens))
    verdict = lim.check(tenant, model, time.monotonic() if now is None else now, tokens)
    if not verdict.allowed:
        metrics = getattr(state, "metrics", None)
        if metrics is not None:
            metrics.serving_limited(tenant, (verdict.limit or "").rsplit(".", 1)[-1])
        raise refusal(tenant, verdict)
    return verdict


class UsageGate:
    """One request's accounting after it was admitted: ``done(version, usage)`` once the model
    answered (the router calls it; ``usage`` None when the answer never came), ``close()`` after
    the call returns (gives the estimate back if nothing was reported: a cache hit, an error)."""

    def __init__(
        self,
        state: Any,
        router: Any,
        tenant: Optional[str],
        model: str,
        verdict: Verdict,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.state, self.router, self.tenant, self.model = state, router, tenant, model
        self.verdict, self.clock = verdict, clock
        self.settled = False

    def done(self, version: Optional[str], usage: Optional[Mapping[str, Any]]) -> None:
        """The model's answer (or its failure, ``usage`` None): settle, count, report. Once."""
        if self.settled:
            return
        self.settled = True
        prompt = _count(usage, "prompt_tokens")
        completion = _count(usage, "completion_tokens")
        if self.tenant is not None and self.verdict.charged:
            limiter_of(self.state).settle(
                self.tenant, self.model, prompt + completion, self.verdict.charged, self.clock()
            )
        if usage is None or version is None or prompt + completion == 0:
            return
        who = self.tenant or ADMIN
        metrics = getattr(self.state, "metrics", None)
        if metrics is not None:
            metrics.serving_tokens(who, self.model, prompt, completion)
        record = getattr(self.router, "usage", None)
        if record is not None:
            record(who, self.model, version, prompt, completion)

    def close(self) -> None:
        """After the call: an answer that reported nothing gives its estimate back."""
        self.done(None, None)


def _count(usage: Optional[Mapping[str, Any]], key: str) -> int:
    v = (usage or {}).get(key, 0)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0


class FirstHopLimits:
    """Serving limits and token accounting at a model's own base URL (``serving/gate.py``): the
    tenants' limits come with their keys' verdicts (``KeyCache.serving_limits``, from
    ``orion-api``). The limit holds for the model as a whole: each of the front version's N
    running replicas holds ``1/N`` of it, N read from the routing table the router holds (the
    manager's count of Serve's running replicas), as Envoy's local rate limit splits a limit
    over its instances (docs/serving-limits.md says why, and the accuracy). ``own_app``: the
    Serve application of this replica (None: N is 1). Tokens are counted for every tenant,
    limited or not, and reach the serving manager's usage records through the router."""

    def __init__(
        self,
        keys: Any,
        router: Any,
        *,
        own_app: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        from types import SimpleNamespace

        self.keys, self.router, self.own_app, self.clock = keys, router, own_app, clock
        self.state = SimpleNamespace(metrics=None, api_replicas=1, serving_limiter=None)
        self._version = -1

    def replicas(self, model: str) -> int:
        """The front version's running replicas (at least 1: this one answers)."""
        n = self.router.replicas_of(model, self.own_app) if self.own_app is not None else None
        return max(1, n or 1)

    def __call__(self, tenant: Optional[str], model: str, body: Mapping[str, Any]) -> UsageGate:
        """Admit one request (raises ``ServingLimited``) and return its accounting."""
        lim = limiter_of(self.state)
        if self._version != self.keys.serving_limits_version:
            self._version = self.keys.serving_limits_version
            limits = {t: ServingLimits.model_validate(v) for t, v in self.keys.serving_limits.items() if v}
            lim.configure(limits)
        now = self.clock()
        lim.reshare(1.0 / self.replicas(model), now)  # a no-op unless the count changed
        verdict = admit(self.state, tenant, model, body, now=now)
        return UsageGate(self.state, self.router, tenant, model, verdict, self.clock)
