"""``orion simulate``: replay a pod list through a placement policy for several seeds.

    orion simulate --nodes NODES.csv --pods PODS.csv [--policy NAME] [--seeds 42-51 | 42,43]
                   [--max-arrived 130] [--jobs 2] [--output json]

With ``--output json`` the last line of stdout is one JSON object: ``policy``, ``seeds``,
``unallocated_pct`` (arrived % as a string -> unallocated GPU %, mean over seeds),
``unallocated_pct_std``, ``decisions_per_s`` (per core), ``failed_pods`` (mean), ``pods``, ``nodes``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
from typing import Optional, Sequence

from ..policy.placement import DEFAULT_POLICY, POLICY_NAMES
from .replay import ReplayResult, replay, report_points
from .trace import read_nodes, read_pods


def parse_seeds(text: str) -> list[int]:
    """``"42-51"`` (inclusive range) or ``"42,43,50"`` (list; items may be ranges too)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi < lo:
                raise argparse.ArgumentTypeError(f"empty seed range {part!r}")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


def _seeds_arg(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad --seeds {text!r}: {e}") from None


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", required=True, help="node list CSV (openb_node_list_gpu_node format)")
    p.add_argument("--pods", required=True, help="pod list CSV (any openb pod-list format)")
    p.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        choices=POLICY_NAMES,
        help=f"placement policy (default: {DEFAULT_POLICY}, Orion's default)",
    )
    p.add_argument(
        "--seeds",
        type=_seeds_arg,
        default=list(range(42, 52)),
        help="seeds: a range A-B or a comma list (default 42-51)",
    )
    p.add_argument(
        "--max-arrived",
        type=int,
        default=130,
        help="resample until this %% of the GPU capacity has been requested",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="seeds replayed in parallel processes (default: up to 2)",
    )
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.set_defaults(fn=run_simulate)


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``simulate`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="replay a pod-list trace through a placement policy",
        description=__doc__.split("\n\n")[0],
    )
    _configure(p)
    return p


_NODES: list = []
_PODS: list = []


def _init_worker(nodes_path: str, pods_path: str) -> None:
    global _NODES, _PODS
    _NODES, _PODS = read_nodes(nodes_path), read_pods(pods_path)


def _run_one(job: tuple) -> ReplayResult:
    policy, seed, max_arrived, opts = job
    return replay(_NODES, _PODS, policy, seed, max_arrived, opts)


def run_seeds(
    nodes_path: str,
    pods_path: str,
    policy: str,
    seeds: Sequence[int],
    max_arrived: int = 130,
    jobs: int = 1,
    policy_opts: Optional[dict] = None,
) -> list[ReplayResult]:
    """Replay every seed (in ``jobs`` processes), results in seed order."""
    work = [(policy, s, max_arrived, policy_opts) for s in seeds]
    if jobs <= 1 or len(seeds) == 1:
        _init_worker(nodes_path, pods_path)
        return [_run_one(w) for w in work]
    # spawn, not fork: the caller may be a threaded process (fork copies locks held by threads).
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(jobs, len(seeds)), _init_worker, (nodes_path, pods_path)) as pool:
        return pool.map(_run_one, work, chunksize=1)


def summarize(results: Sequence[ReplayResult], policy: str, max_arrived: int) -> dict:
    """The JSON summary of several seeds' replays."""
    keys = [str(x) for x in report_points(max_arrived)]
    mean = {k: round(statistics.fmean(r.unallocated[k] for r in results), 3) for k in keys}
    std = {k: round(statistics.pstdev([r.unallocated[k] for r in results]), 3) for k in keys}
    secs = sum(r.seconds for r in results)
    decisions = sum(r.placed + r.failed for r in results)
    return {
        "policy": policy,
        "seeds": [r.seed for r in results],
        "max_arrived": max_arrived,
        "unallocated_pct": mean,
        "unallocated_pct_std": std,
        "decisions_per_s": round(decisions / secs, 1) if secs > 0 else None,
        "failed_pods": round(statistics.fmean(r.failed for r in results), 1),
        "pods": round(statistics.fmean(r.placed + r.failed for r in results), 1),
    }


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``orion simulate`` from parsed arguments; returns the exit code."""
    try:
        results = run_seeds(args.nodes, args.pods, args.policy, args.seeds, args.max_arrived, args.jobs)
    except (OSError, ValueError) as e:
        print(f"orion simulate: {e}", file=sys.stderr)
        return 2
    summary = summarize(results, args.policy, args.max_arrived)
    summary["nodes"], summary["pods_file"] = args.nodes, args.pods
    for r in results:
        print(
            f"seed {r.seed}: unallocated {r.unallocated.get('100', float('nan')):.2f}% at 100%, "
            f"{r.unallocated.get(str(args.max_arrived), float('nan')):.2f}% at "
            f"{args.max_arrived}%; {r.failed} of {r.placed + r.failed} pods failed; "
            f"{r.decisions_per_s:.0f} decisions/s"
        )
    print(f"policy {args.policy}, mean over {len(results)} seed(s): unallocated GPU % by arrived %")
    for k, v in summary["unallocated_pct"].items():
        print(f"  {k:>4}%  {v:6.2f}  (±{summary['unallocated_pct_std'][k]:.2f})")
    print(f"decisions/s (per core): {summary['decisions_per_s']}")
    if args.output == "json":
        print(json.dumps(summary))
    return 0


def simulate_main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``orion simulate`` (``argv`` without the program and subcommand names)."""
    p = argparse.ArgumentParser(prog="orion simulate", description=__doc__.split("\n\n")[0])
    _configure(p)
    args = p.parse_args(list(argv) if argv is not None else None)
    return args.fn(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(simulate_main())
