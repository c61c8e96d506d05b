"""The price table: what one GPU-, CPU- or GiB-hour costs per market, versioned by content.

A table comes from ``orion.cost.prices`` (and, when the EC2 adapter can reach a pricing endpoint,
from EC2's prices; moto has no pricing API, so in tests it is config only). Rates are per unit-hour:
``gpu`` per GPU type (``default`` for any other), ``cpu`` per vCPU, ``memory_gib`` per GiB, and
``instances`` per instance-hour, which for a pool of that instance type stands in for the per-GPU
rate (GPU nodes) or the per-vCPU rate (CPU nodes), so a pool priced by instance is charged exactly
its instance price when full. A market without a rate falls back to ``on_demand`` (a spot or
reserved rate the operator did not give is never cheaper than what is known).

Versions: the version is a hash of the table's content, so the same prices are the same version
wherever they are loaded; ``PriceBook`` keeps every version with the time it took effect, and a
usage segment is priced by the version in effect when it started.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

MARKETS = ("on_demand", "spot", "reserved")
ON_DEMAND = "on_demand"


class PriceError(ValueError):
    """A price table that cannot be used (the message names the field)."""


def _rates(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise PriceError(f"{where}: expected a mapping of market to price, e.g. {{on_demand: 2.0}}")
    out: dict[str, float] = {}
    for market, price in value.items():
        if market not in MARKETS:
            raise PriceError(f"{where}.{market}: unknown market (one of {', '.join(MARKETS)})")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < 1e6:
            raise PriceError(f"{where}.{market}: {price!r} is not a price (a number in [0, 1e6))")
        out[str(market)] = float(price)
    return out


@dataclass(frozen=True)
class Rates:
    """Per unit-hour rates of one market for one pool / GPU type."""

    gpu: float = 0.0
    cpu: float = 0.0
    memory_gib: float = 0.0


@dataclass(frozen=True)
class PriceTable:
    """One version of the prices (see the module docstring for the units)."""

    currency: str = "USD"
    gpu: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # gpu type → market → rate
    cpu: Mapping[str, float] = field(default_factory=dict)  # market → rate per vCPU-hour
    memory_gib: Mapping[str, float] = field(default_factory=dict)  # market → rate per GiB-hour
    instances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # type → market → rate
    # serving tokens: model id (or ``default``) → price per 1,000 tokens (docs/serving-limits.md)
    tokens: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, prices: Mapping[str, Any], currency: str = "USD") -> "PriceTable":
        """A table from ``orion.cost.prices``; ``PriceError`` names the bad field."""
        known = {"gpu", "cpu", "memory_gib", "instances", "tokens"}
        for key in prices:
            if key not in known:
                raise PriceError(f"cost.prices.{key}: unknown key (one of {', '.join(sorted(known))})")
        gpu_in = prices.get("gpu") or {}
        inst_in = prices.get("instances") or {}
        if not isinstance(gpu_in, Mapping) or not isinstance(inst_in, Mapping):
            raise PriceError("cost.prices.gpu / instances: expected a mapping of type to market prices")
        return cls(
            currency=currency,
            gpu={str(t): _rates(f"cost.prices.gpu.{t}", v) for t, v in gpu_in.items()},
            cpu=_rates("cost.prices.cpu", prices.get("cpu") or {}),
            memory_gib=_rates("cost.prices.memory_gib", prices.get("memory_gib") or {}),
            instances={str(t): _rates(f"cost.prices.instances.{t}", v) for t, v in inst_in.items()},
            tokens=token_prices(prices.get("tokens") or {}),
        )

    def as_json(self) -> dict[str, Any]:
        """The table as plain data (what is stored and hashed)."""
        return {
            "currency": self.currency,
            "gpu": {t: dict(sorted(v.items())) for t, v in sorted(self.gpu.items())},
            "cpu": dict(sorted(self.cpu.items())),
            "memory_gib": dict(sorted(self.memory_gib.items())),
            "instances": {t: dict(sorted(v.items())) for t, v in sorted(self.instances.items())},
            # only when priced: a table without token prices keeps the version it always had
            **({"tokens": dict(sorted(self.tokens.items()))} if self.tokens else {}),
        }

    @property
    def version(self) -> str:
        """A short hash of the content: equal tables are the same version."""
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def rates(
        self,
        market: str,
        gpu_type: Optional[str] = None,
        *,
        instance_type: Optional[str] = None,
        node_gpus: float = 0.0,
        node_cpus: float = 0.0,
    ) -> Rates:
        """The rates of ``market`` for a GPU type, or for a pool of ``instance_type`` whose node
        has ``node_gpus`` / ``node_cpus`` (an instance price is spread over them)."""
        gpu = _pick(self.gpu.get(gpu_type or "", {}), market)
        if gpu is None:
            gpu = _pick(self.gpu.get("default", {}), market) or 0.0
        cpu = _pick(self.cpu, market) or 0.0
        mem = _pick(self.memory_gib, market) or 0.0
        inst = _pick(self.instances.get(instance_type or "", {}), market)
        if inst is not None:
            if node_gpus > 0:
                return Rates(gpu=inst / node_gpus, cpu=0.0, memory_gib=0.0)
            if node_cpus > 0:
                return Rates(gpu=0.0, cpu=inst / node_cpus, memory_gib=0.0)
        return Rates(gpu=gpu, cpu=cpu, memory_gib=mem)


def token_prices(value: Any) -> dict[str, float]:
    """``cost.prices.tokens``: model id (or ``default``) → price per 1,000 tokens; a
    ``PriceError`` names the bad field."""
    if not isinstance(value, Mapping):
        raise PriceError("cost.prices.tokens: expected a mapping of model id to a price per 1,000 tokens")
    out: dict[str, float] = {}
    for model, price in value.items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < 1e6:
            raise PriceError(f"cost.prices.tokens.{model}: {price!r} is not a price (a number in [0, 1e6))")
        out[str(model)] = float(price)
    return out


def token_cost(table: PriceTable, model: str, tokens: int) -> float:
    """What ``tokens`` of ``model`` cost: its price per 1,000 (else ``default``, else nothing)."""
    if not tokens or not table.tokens:
        return 0.0
    per_k = table.tokens.get(model, table.tokens.get("default", 0.0))
    return tokens * per_k / 1000.0


def _pick(by_market: Mapping[str, float], market: str) -> Optional[float]:
    if market in by_market:
        return by_market[market]
    return by_market.get(ON_DEMAND)


class PriceBook:
    """Every version of the price table with the time it took effect (oldest first)."""

    def __init__(self, versions: list[tuple[float, PriceTable]]) -> None:
        if not versions:
            raise PriceError("a price book needs at least one table")
        self._versions = sorted(versions, key=lambda v: v[0])
        self._starts = [v[0] for v in self._versions]

    @property
    def current(self) -> PriceTable:
        """The newest table."""
        return self._versions[-1][1]

    def at(self, t: float) -> PriceTable:
        """The table in effect at ``t`` (the oldest one for times before any version)."""
        i = bisect.bisect_right(self._starts, t) - 1
        return self._versions[max(0, i)][1]
