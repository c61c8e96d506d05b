"""Shared by the benchmarks: start/stop a private `orion up`, percentiles, timestamps."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
from datetime import datetime
from typing import Iterator, Optional, Sequence


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """Non-default ports by default: a developer's own `orion up` may use 8000/6379/8265."""
    p.add_argument("--port", type=int, default=8100, help="Orion API port")
    p.add_argument("--ray-port", type=int, default=6390)
    p.add_argument("--dashboard-port", type=int, default=8275)
    p.add_argument("--num-cpus", type=float, default=2)


def err(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


@contextlib.contextmanager
def orion_up(args: argparse.Namespace) -> Iterator[dict]:
    """`orion up` with a fresh ``ORION_HOME`` (a temp dir, removed after); always `orion down`.

    Yields ``up()``'s info plus ``"home"``. Run from the project root: Ray adds the driver's
    working directory to its workers' path, which is how workers import ``benchmarks._tasks``.
    """
    from orion_ray.cluster import down, up
    from orion_ray.config import OrionConfig

    home = tempfile.mkdtemp(prefix="orion-bench-")
    os.environ["ORION_HOME"] = home
    os.environ["RAY_AUTH_MODE"] = "disabled"
    for var in ("ORION_URL", "ORION_API_KEY"):  # the client must talk to *this* Orion
        os.environ.pop(var, None)
    cfg = OrionConfig()
    cfg.orion.api.port = args.port
    # --pin (e2e): single-bundle tasks pinned to their node, no placement group each
    cfg.orion.scheduler.pin_single_bundle_tasks = bool(getattr(args, "pin", False))
    if getattr(args, "tracing_on", False):  # e2e --tracing: every span written to a file
        cfg.orion.tracing.enabled, cfg.orion.tracing.exporter = True, "file"
        cfg.orion.tracing.path = os.path.join(home, "spans.jsonl")
    try:
        err(f"orion up (ORION_HOME={home}, API :{args.port}, Ray :{args.ray_port}) ...")
        info = up(
            cfg, num_cpus=args.num_cpus, ray_port=args.ray_port, dashboard_port=args.dashboard_port, say=err
        )
        yield dict(info, home=home)
    finally:
        down(say=err)
        shutil.rmtree(home, ignore_errors=True)


def pct(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(xs: Sequence[float]) -> float:
    return pct(xs, 50)


def ts(iso: Optional[str]) -> Optional[float]:
    """POSIX time of the API's ISO-8601 ``...Z`` timestamps."""
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
