"""Live-mode placement decisions stay what they were: the recorded nodes and GPUs of a generated
trace shaped like the Alibaba openb lists (shared fractions, whole GPUs, CPU-only pods, GPU types,
gangs under every strategy, releases in between, the request mix learnt online).

The speed work on the engine (tight-fit-only scoring of shared GPUs, gangs through the score cache,
caches kept across cycles) must not move a single bundle. ``data/live_decisions.json`` was recorded
with the engine before that work; regenerate it only for a deliberate policy change:

    python -m tests.unit.test_live_decisions > tests/unit/data/live_decisions.json
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

from orion_ray.policy import NodeView
from orion_ray.policy.live_placement import Held, LivePlacer, bundle_request
from orion_ray.policy.placement import get_policy

GOLDEN = Path(__file__).parent / "data" / "live_decisions.json"
LABEL = "ray.io/accelerator-type"
STRATEGIES = ("PACK", "SPREAD", "STRICT_SPREAD", "STRICT_PACK")


def _nodes(rng: random.Random) -> list[NodeView]:
    out = []
    for i in range(48):
        kind = rng.choice(["V100M32", "T4", "A10", "G2", "cpu"])
        gpus = {"V100M32": 8, "T4": 2, "A10": 4, "G2": 8, "cpu": 0}[kind]
        total = {"CPU": float(rng.choice([32, 64, 96])), "memory": float(rng.choice([256, 512]) * 2**30)}
        if gpus:
            total["GPU"] = float(gpus)
        out.append(NodeView(f"node-{i:03d}", dict(total), total, {LABEL: kind} if gpus else {}))
    return out


def _request(rng: random.Random) -> tuple[dict[str, float], Optional[str]]:
    kind = rng.random()
    cpu = float(rng.choice([1, 2, 4, 6, 8, 12, 16]))
    mem = float(rng.choice([4, 8, 16, 32]) * 2**30)
    if kind < 0.15:
        return {"CPU": cpu, "memory": mem}, None
    if kind < 0.55:
        gpu = rng.choice([0.1, 0.25, 0.3, 0.5, 0.5, 0.6, 0.75])
    else:
        gpu = float(rng.choice([1, 1, 1, 2, 4, 8]))
    gpu_type = rng.choice([None, None, None, "T4", "A10", "V100M32", "G2"])
    return {"CPU": cpu, "memory": mem, "GPU": gpu}, gpu_type


def decisions(seed: int = 11, steps: int = 700) -> list[Any]:
    """Place, commit and release a generated sequence in live mode; every decision in order."""
    rng = random.Random(seed)
    policy = get_policy("orion")
    placer = LivePlacer(policy, _nodes(rng), [])
    holding: list[list[Held]] = []
    out: list[Any] = []
    for _ in range(steps):
        bundle, gpu_type = _request(rng)
        policy.observe(bundle_request(bundle, gpu_type))
        n = rng.choice([2, 3, 4]) if rng.random() < 0.2 else 1
        strategy = "PACK" if n == 1 else rng.choice(STRATEGIES)
        got = placer.place([bundle] * n, [gpu_type] * n, strategy)
        if got is not None:
            placer.commit(got)
            holding.append(got)
        if holding and rng.random() < 0.3:
            placer.release(holding.pop(rng.randrange(len(holding))))
        out.append(None if got is None else [[h.node_id, list(h.gpu_indices)] for h in got])
    return out


def test_live_decisions_match_the_recorded_ones():
    want = json.loads(GOLDEN.read_text())
    got = decisions()
    assert sum(d is not None for d in got) > 300  # the trace really places work
    assert [i for i, (a, b) in enumerate(zip(got, want)) if a != b][:5] == []
    assert got == want


if __name__ == "__main__":
    print(json.dumps(decisions()))
