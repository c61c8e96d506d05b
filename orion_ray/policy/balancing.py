"""Which replica takes a request: the pure choices behind Orion's Serve request routers
(``orion_ray/serving/routers.py``). No Ray here, so each is unit-tested on plain ids.

Each function answers *ranks*: lists of replica ids, most preferred first. Serve's router probes the
replicas of a rank for their queue lengths and sends the request to the least loaded one that
accepts it, moving to the next rank when none does, so a full replica is never waited on.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from typing import Any, Optional, Sequence

Ranks = list[list[str]]


def round_robin(ids: Sequence[str], turn: int) -> Ranks:
    """Replica ``turn mod n`` of the ids in a fixed (sorted) order, the others after it in
    ring order, so a full replica passes its turn to the next one."""
    if not ids:
        return []
    ring = sorted(ids)
    start = turn % len(ring)
    return [[ring[start]], ring[start + 1 :] + ring[:start]] if len(ring) > 1 else [[ring[start]]]


def least_connections(queue_lens: dict[str, Optional[int]], turn: int = 0) -> Ranks:
    """Replicas grouped by their known queue length, shortest first. An unknown length counts as
    0 (Serve probes it before choosing), so a fresh replica is tried before a busy one. Ties are
    rotated by ``turn`` so equal replicas share the load."""
    if not queue_lens:
        return []
    ring = sorted(queue_lens)
    shift = turn % len(ring)
    ring = ring[shift:] + ring[:shift]
    by_len: dict[int, list[str]] = {}
    for rid in ring:
        by_len.setdefault(queue_lens[rid] or 0, []).append(rid)
    return [by_len[n] for n in sorted(by_len)]


def weighted(ids_by_rank: dict[str, int], weights: Sequence[float], r: float) -> Ranks:
    """One replica drawn with probability proportional to the weight of its rank (replica ``i``
    has ``weights[i]``; a rank beyond the list weighs 1), the others after it. ``r`` in [0, 1)."""
    if not ids_by_rank:
        return []
    ids = sorted(ids_by_rank, key=lambda rid: (ids_by_rank[rid], rid))
    ws = [weights[ids_by_rank[rid]] if 0 <= ids_by_rank[rid] < len(weights) else 1.0 for rid in ids]
    total = sum(ws)
    if total <= 0:  # every live replica weighs 0: spread evenly rather than refuse
        ws, total = [1.0] * len(ids), float(len(ids))
    cumulative = list(itertools.accumulate(ws))
    pick = min(bisect.bisect_right(cumulative, r * total), len(ids) - 1)
    while ws[pick] <= 0:  # r landed on a zero-width slot's edge
        pick = (pick + 1) % len(ids)
    rest = [rid for i, rid in enumerate(ids) if i != pick]
    return [[ids[pick]], rest] if rest else [[ids[pick]]]


def prompt_text(args: Sequence[Any], kwargs: dict[str, Any]) -> Optional[str]:
    """The prompt of a replica call ``complete(kind, body)`` / ``stream(kind, body)``: the body's
    ``prompt`` or its messages' contents joined; None when the call carries no OpenAI body."""
    bodies = [a for a in args if isinstance(a, dict)] + [v for v in kwargs.values() if isinstance(v, dict)]
    for body in bodies:
        prompt = body.get("prompt")
        if isinstance(prompt, list):  # OpenAI allows a list of prompts: the first leads
            prompt = prompt[0] if prompt and isinstance(prompt[0], str) else None
        if isinstance(prompt, str):
            return prompt
        messages = body.get("messages")
        if isinstance(messages, list):
            parts = []
            for m in messages:
                content = m.get("content") if isinstance(m, dict) else None
                if isinstance(content, str):
                    parts.append(f"{m.get('role', '')}:{content}")
            return "\n".join(parts)
    return None


def _score(prefix: str, rid: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{rid}\x00{prefix}".encode(), digest_size=8).digest(), "big")


def prefix_owner(prefix: str, ids: Sequence[str]) -> Optional[str]:
    """The replica a prompt prefix belongs to: rendezvous hashing, so adding or losing a replica
    moves only the prefixes that replica owned (the others keep their warm KV cache)."""
    return max(ids, key=lambda rid: _score(prefix, rid)) if ids else None


def prefix_affinity(
    text: Optional[str],
    queue_lens: dict[str, Optional[int]],
    *,
    prefix_chars: int,
    imbalance_threshold: int,
    turn: int = 0,
) -> Ranks:
    """The owner of the prompt's first ``prefix_chars`` characters, unless its queue is more than
    ``imbalance_threshold`` longer than the least loaded replica's (then least connections);
    without a prompt, least connections."""
    if not queue_lens:
        return []
    if text is None:
        return least_connections(queue_lens, turn)
    owner = prefix_owner(text[:prefix_chars], list(queue_lens))
    assert owner is not None
    shortest = min((n or 0) for n in queue_lens.values())
    if (queue_lens[owner] or 0) - shortest > imbalance_threshold:
        return least_connections(queue_lens, turn)
    rest = least_connections({k: v for k, v in queue_lens.items() if k != owner}, turn)
    return [[owner], *rest]
