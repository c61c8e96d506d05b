"""Per-tenant serving limits as token buckets (pure: the clock is an argument).

Each tenant may have a requests-per-second bucket and a tokens-per-minute bucket, for the tenant
as a whole and per model (``ServingLimits``). A request passes when every bucket that applies to
it has room; only then is anything taken, so a refused request costs nothing.

- requests: one token per request, ``requests_per_second`` refilled each second, ``burst`` deep;
- tokens: the prompt's estimated tokens are charged up front (``check(..., tokens=)``); when the
  answer's ``usage`` arrives, ``settle`` charges the difference (or gives back the surplus). A
  bucket may go below zero (an answer longer than its estimate): the debt is paid by refill
  before the next request passes. A request whose estimate exceeds the whole bucket passes when
  the bucket is full, so a large prompt is slow, never impossible.

``share`` scales every rate and depth: an Orion with N API replicas gives each replica's limiter
``1/N`` of the configured limits, and a model's base URL gives each of its N replicas ``1/N``,
changed with ``reshare`` as N changes (see docs/serving-limits.md for the accuracy that buys).

The interface is deliberately tiny — ``check(tenant, model, now, tokens) -> Verdict`` and
``settle(tenant, model, tokens, charged, now)`` — so any first hop (the API's ``/v1`` routes, a
model's own gate) can hold one.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..serving_limits_config import ModelLimits, ServingLimits

RPS, TPM = "requests_per_second", "tokens_per_minute"
CHARS_PER_TOKEN = 4.0  # a prompt's estimate before the model counts it (OpenAI's rule of thumb)


@dataclass(frozen=True)
class Verdict:
    """``allowed``, else ``retry_after`` seconds until the bucket allows it and the ``limit`` that
    refused it (its field path, e.g. ``serving_limits.models.chat.tokens_per_minute``) with its
    configured ``value``. ``charged``: the tokens taken up front (give it back to ``settle``)."""

    allowed: bool
    retry_after: float = 0.0
    limit: Optional[str] = None
    value: Optional[float] = None
    charged: int = 0


ALLOWED = Verdict(True)


class Bucket:
    """``rate`` units a second up to ``depth``; starts full; its level may go negative (debt)."""

    __slots__ = ("rate", "depth", "level", "at")

    def __init__(self, rate: float, depth: float, now: float):
        self.rate, self.depth = float(rate), float(depth)
        self.level, self.at = float(depth), now

    def refill(self, now: float) -> None:
        # a clock that goes backwards refills nothing (and never moves ``at`` back)
        self.level = min(self.depth, self.level + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)

    def wait(self, need: float) -> float:
        """Seconds until the level reaches ``need`` (capped at the depth), 0 when it has."""
        need = min(need, self.depth)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """The prompt's tokens, estimated from its characters (a completion's ``prompt`` or a chat's
    ``messages``), at least 1."""
    chars = 0
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    elif isinstance(prompt, list):
        chars += sum(len(p) for p in prompt if isinstance(p, str))
    for m in body.get("messages") or ():
        if isinstance(m, Mapping) and isinstance(m.get("content"), str):
            chars += len(m["content"]) + 4  # the role and the chat template's markers
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def _specs(limits: ModelLimits, where: str, share: float) -> list[tuple[str, str, float, float, float]]:
    """(kind, field path, rate per second, depth, configured value) of each bucket a scope has."""
    out = []
    if limits.requests_per_second is not None:
        rps = limits.requests_per_second
        burst = limits.burst if limits.burst is not None else max(1, math.ceil(rps))
        out.append((RPS, f"{where}.{RPS}", rps * share, max(1.0, burst * share), rps))
    if limits.tokens_per_minute is not None:
        tpm = float(limits.tokens_per_minute)
        out.append((TPM, f"{where}.{TPM}", tpm * share / 60.0, max(1.0, tpm * share), tpm))
    return out


class ServingLimiter:
    """The buckets of one first hop, by (tenant, model or ``None``, kind)."""

    def __init__(self, limits: Optional[Mapping[str, ServingLimits]] = None, *, share: float = 1.0):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share = share
        self._limits: dict[str, ServingLimits] = {}
        self._buckets: dict[tuple[str, Optional[str], str], Bucket] = {}
        self._lock = threading.Lock()  # a first hop may call from several threads
        self.configure(limits or {})

    def configure(self, limits: Mapping[str, ServingLimits]) -> None:
        """The tenants' limits (a reload): a bucket whose rate and depth did not change keeps its
        level; a changed one starts full; one no longer configured is dropped."""
        with self._lock:
            self._limits = {t: lim for t, lim in limits.items() if not _unlimited(lim)}
            wanted = self._wanted()
            for key in list(self._buckets):
                b = self._buckets[key]
                if wanted.get(key) != (b.rate, b.depth):
                    del self._buckets[key]

    def reshare(self, share: float, now: float) -> None:
        """Hold ``share`` of every limit from now on (a model's first hop whose replica count
        changed). Each bucket keeps its fill *fraction*: what this holder has left stays its
        share of what the tenant has left, so a scale neither resets the buckets (a burst more at
        every scale) nor empties them."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        with self._lock:
            if share == self.share:
                return
            self.share = share
            wanted = self._wanted()
            for key in list(self._buckets):
                b = self._buckets[key]
                if key not in wanted:
                    del self._buckets[key]
                    continue
                b.refill(now)
                rate, depth = wanted[key]
                b.level, b.rate, b.depth = b.level * depth / b.depth, rate, depth

    def _wanted(self) -> dict[tuple[str, Optional[str], str], tuple[float, float]]:
        """(rate, depth) of every bucket the limits and the share call for."""
        wanted: dict[tuple[str, Optional[str], str], tuple[float, float]] = {}
        for tenant, lim in self._limits.items():
            for kind, _w, rate, depth, _v in _specs(lim, "serving_limits", self.share):
                wanted[(tenant, None, kind)] = (rate, depth)
            for model, mlim in lim.models.items():
                for kind, _w, rate, depth, _v in _specs(mlim, "", self.share):
                    wanted[(tenant, model, kind)] = (rate, depth)
        return wanted

    def limited(self, tenant: str) -> bool:
        """Whether ``tenant`` has any serving limit."""
        return tenant in self._limits

    def limits_of(self, tenant: str) -> Optional[ServingLimits]:
        """``tenant``'s serving limits (None: unlimited) — what a model's first hop enforces."""
        return self._limits.get(tenant)

    def _scopes(self, tenant: str, model: str) -> list[tuple[Optional[str], ModelLimits, str]]:
        lim = self._limits.get(tenant)
        if lim is None:
            return []
        scopes: list[tuple[Optional[str], ModelLimits, str]] = [(None, lim, "serving_limits")]
        if model in lim.models:
            scopes.append((model, lim.models[model], f"serving_limits.models.{model}"))
        return scopes

    def _bucket(self, key: tuple[str, Optional[str], str], rate: float, depth: float, now: float) -> Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(rate, depth, now)
        b.refill(now)
        return b

    def check(self, tenant: str, model: str, now: float, tokens: int = 0) -> Verdict:
        """Admit one request of ``tenant`` to ``model`` estimated at ``tokens`` prompt tokens, or
        say how long to wait and which limit refused it (the longest wait when several do)."""
        with self._lock:
            scopes = self._scopes(tenant, model)
            if not scopes:
                return ALLOWED
            takes: list[tuple[Bucket, float]] = []
            worst: Optional[Verdict] = None
            for scoped_model, lim, where in scopes:
                for kind, path, rate, depth, value in _specs(lim, where, self.share):
                    b = self._bucket((tenant, scoped_model, kind), rate, depth, now)
                    need = 1.0 if kind == RPS else float(max(1, tokens))
                    wait = b.wait(need)
                    if wait > 0:
                        if worst is None or wait > worst.retry_after:
                            worst = Verdict(False, wait, path, value)
                    else:
                        takes.append((b, need if kind == RPS else float(tokens)))
            if worst is not None:
                return worst
            for b, amount in takes:
                b.level -= amount
            return Verdict(True, charged=max(0, int(tokens)))

    def settle(
        self, tenant: str, model: str, tokens: int, charged: int = 0, now: Optional[float] = None
    ) -> None:
        """The answer used ``tokens`` (prompt + completion) where ``charged`` were taken up front:
        take the difference from the tenant's (and the model's) token buckets, or give it back."""
        delta = float(tokens) - float(charged)
        if delta == 0:
            return
        with self._lock:
            for scoped_model, _lim, _where in self._scopes(tenant, model):
                b = self._buckets.get((tenant, scoped_model, TPM))
                if b is None:
                    continue
                if now is not None:
                    b.refill(now)
                b.level = min(b.depth, b.level - delta)


def _unlimited(lim: ServingLimits) -> bool:
    return lim.empty() and all(m.empty() for m in lim.models.values())
