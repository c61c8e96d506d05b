"""Cost-aware placement: which capacity market a workload should try first (pure).

Nodes carry their market in the ``orion.io/market`` label (set from the pool's ``market`` when
Orion starts the node; a node without it counts as on-demand). A workload marked ``qos: spot_ok``
tolerates interruption, so it tries the spot nodes first; every other workload tries the
on-demand (and reserved) nodes first. Both fall back to the rest of the cluster rather than wait:
a preference, not a constraint — an interrupted spot run is requeued like any lost run, and a
non-tolerant workload on spot is better than one that never starts.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

MARKET_LABEL = "orion.io/market"
SPOT = "spot"


def market_of(labels: Mapping[str, str]) -> str:
    """A node's market from its labels (on-demand unless it says otherwise)."""
    return labels.get(MARKET_LABEL) or "on_demand"


def spot_node_ids(nodes: Iterable[object]) -> frozenset[str]:
    """The ids of the spot nodes among ``nodes`` (``NodeView``-like: ``node_id``, ``labels``)."""
    return frozenset(n.node_id for n in nodes if market_of(getattr(n, "labels", {}) or {}) == SPOT)  # type: ignore[attr-defined]


def avoid_first(spot_ok: bool, spot: frozenset[str], all_ids: Iterable[str]) -> frozenset[str]:
    """The nodes to leave out of the first placement try (empty: no preference applies, the
    cluster is all one market)."""
    ids = frozenset(all_ids)
    if not spot or spot >= ids:
        return frozenset()
    return ids - spot if spot_ok else spot


POOL_LABEL = "orion.io/pool"  # the same label as node_lifecycle.POOL_LABEL


def with_market(
    placement: list[dict[str, Any]], labels: Mapping[str, Mapping[str, str]]
) -> list[dict[str, Any]]:
    """``placement`` (``placement_record``) with each bundle's pool and market, from its node's
    labels, so usage can be priced after the node is gone (docs/cost.md)."""
    out = []
    for rec in placement:
        node = labels.get(rec.get("node_id", ""), {})
        out.append({**rec, "pool": node.get(POOL_LABEL), "market": market_of(node)})
    return out
