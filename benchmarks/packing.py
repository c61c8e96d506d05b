"""Benchmark `packing`: replay Alibaba openb pod lists through every placement policy, as the FGD
paper does, and print the unallocated GPU % next to the paper's published numbers.

    python -m benchmarks.packing [--traces DIR] [--lists default,cpu050] [--policies fgd,orion]
                                 [--seeds 42-51] [--jobs 2]

The engine is `orion simulate` (``orion_ray.sim.cli``): the same seeds, resampling and metric. The
published column is the reference read from the traces README (the simulator repository's results);
every other number is measured in this run. Last line: ``{"benchmark": "packing", "table": {policy:
{pod_list: {"100": pct, "130": pct}}}, "decisions_per_s": {policy: n}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from orion_ray.policy.placement import POLICY_NAMES
from orion_ray.sim.cli import parse_seeds, run_seeds, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TRACES = os.path.normpath(os.path.join(ROOT, "..", "shared", "traces", "alibaba-openb"))
LISTS = ("default", "multigpu20", "gpushare40", "cpu050", "gpuspec10")
NODES_FILE = "openb_node_list_gpu_node.csv"

# Reference only (traces README, "Published results"): unallocated GPU % at (100 %, 130 %) arrived.
PUBLISHED = {
    "random": {
        "default": (13.70, 12.53),
        "multigpu20": (13.08, 11.31),
        "gpushare40": (15.14, 14.00),
        "cpu050": (10.98, 8.76),
        "gpuspec10": (13.74, 12.57),
    },
    "dot_product": {
        "default": (9.38, 9.15),
        "multigpu20": (8.15, 7.94),
        "gpushare40": (10.70, 10.44),
        "cpu050": (6.97, 6.73),
        "gpuspec10": (9.83, 9.61),
    },
    "gpu_clustering": {
        "default": (8.35, 8.12),
        "multigpu20": (6.66, 6.44),
        "gpushare40": (10.24, 9.98),
        "cpu050": (6.48, 6.21),
        "gpuspec10": (8.04, 7.82),
    },
    "gpu_packing": {
        "default": (8.22, 8.00),
        "multigpu20": (6.50, 6.29),
        "gpushare40": (10.23, 9.97),
        "cpu050": (6.54, 6.28),
        "gpuspec10": (7.76, 7.54),
    },
    "best_fit": {
        "default": (7.14, 6.92),
        "multigpu20": (6.27, 6.07),
        "gpushare40": (8.56, 8.31),
        "cpu050": (6.44, 6.21),
        "gpuspec10": (6.90, 6.70),
    },
    "fgd": {
        "default": (4.77, 4.61),
        "multigpu20": (4.47, 4.35),
        "gpushare40": (6.04, 5.85),
        "cpu050": (5.00, 4.79),
        "gpuspec10": (5.34, 5.05),
    },
}


# Orion's ideas one at a time (--ablation): option sets of the orion policy, all learning online
# unless said otherwise.
ABLATION = {
    "orion (default)": {},
    "- resource look-ahead": {"resource_lookahead": 0},
    "- type look-ahead": {"type_lookahead": 0},
    "tie: fixed order only": {"tie": "order"},
    "exact float deltas": {"exact": True},
    "fixed mix (whole list)": {"typical": "trace"},
    "no look-ahead, order tie": {"resource_lookahead": 0, "type_lookahead": 0, "tie": "order"},
    "no look-ahead, order, exact": {
        "resource_lookahead": 0,
        "type_lookahead": 0,
        "tie": "order",
        "exact": True,
    },
    "no look-ahead, order, fixed mix": {
        "resource_lookahead": 0,
        "type_lookahead": 0,
        "tie": "order",
        "typical": "trace",
    },
}


def run_ablation(nodes: str, traces: str, lists, seeds, jobs: int) -> dict:
    """Unallocated % at 100/130 for each ABLATION variant of the orion policy."""
    out: dict = {}
    for label, opts in ABLATION.items():
        for lst in lists:
            pods = os.path.join(traces, f"openb_pod_list_{lst}.csv")
            s = summarize(run_seeds(nodes, pods, "orion", seeds, 130, jobs, opts), "orion", 130)
            u = s["unallocated_pct"]
            out.setdefault(label, {})[lst] = {"100": round(u["100"], 2), "130": round(u["130"], 2)}
            err(f"{label:>32} {lst:>11}: {u['100']:5.2f} / {u['130']:5.2f}")
    return out


def err(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """Run the benchmark; prints the table, then the JSON headline as the last line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.packing", description=__doc__)
    p.add_argument("--traces", default=DEFAULT_TRACES, help="folder with the openb CSV files")
    p.add_argument("--lists", default=",".join(LISTS), help="pod lists (names after openb_pod_list_)")
    p.add_argument("--policies", default=",".join(POLICY_NAMES), help="policies to run")
    p.add_argument("--seeds", default="42-51", help="a range A-B or a comma list")
    p.add_argument("--jobs", type=int, default=2, help="seeds replayed in parallel processes")
    p.add_argument(
        "--ablation", action="store_true", help="also run the orion policy with each of its ideas removed"
    )
    args = p.parse_args(argv)
    lists = [x for x in args.lists.split(",") if x]
    policies = [x for x in args.policies.split(",") if x]
    seeds = parse_seeds(args.seeds)
    nodes = os.path.join(args.traces, NODES_FILE)

    table: dict = {}
    rates: dict = {}
    for pol in policies:
        secs = decisions = 0.0
        for lst in lists:
            pods = os.path.join(args.traces, f"openb_pod_list_{lst}.csv")
            t0 = time.time()
            results = run_seeds(nodes, pods, pol, seeds, 130, args.jobs)
            s = summarize(results, pol, 130)
            secs += sum(r.seconds for r in results)
            decisions += sum(r.placed + r.failed for r in results)
            u = s["unallocated_pct"]
            table.setdefault(pol, {})[lst] = {"100": round(u["100"], 2), "130": round(u["130"], 2)}
            err(
                f"{pol:>14} {lst:>11}: {u['100']:5.2f} / {u['130']:5.2f}  "
                f"(±{s['unallocated_pct_std']['100']:.2f}; {time.time() - t0:.0f}s wall)"
            )
        rates[pol] = round(decisions / secs, 1) if secs else None

    print(
        f"Unallocated GPU % at 100% / 130% arrived, mean of {len(seeds)} seed(s) "
        f"({seeds[0]}..{seeds[-1]}); published = traces README; Δ = ours − published"
    )
    head = (
        f"{'policy':<15}{'pod list':<12}{'ours 100':>9}{'pub 100':>9}{'Δ':>7}"
        f"{'ours 130':>10}{'pub 130':>9}{'Δ':>7}"
    )
    print(head)
    print("-" * len(head))
    for pol in policies:
        for lst in lists:
            o = table[pol][lst]
            pub = PUBLISHED.get(pol, {}).get(lst)
            cells = [f"{pol:<15}{lst:<12}{o['100']:>9.2f}"]
            if pub:
                cells.append(
                    f"{pub[0]:>9.2f}{o['100'] - pub[0]:>+7.2f}{o['130']:>10.2f}"
                    f"{pub[1]:>9.2f}{o['130'] - pub[1]:>+7.2f}"
                )
            else:
                fgd = table.get("fgd", {}).get(lst)
                vs = f"{o['100'] - fgd['100']:>+7.2f}" if fgd else f"{'':>7}"
                vs130 = f"{o['130'] - fgd['130']:>+7.2f}" if fgd else f"{'':>7}"
                cells.append(f"{'—':>9}{vs}{o['130']:>10.2f}{'—':>9}{vs130}")
            print("".join(cells))
    if "orion" in table and "fgd" in table:
        print("(for orion, Δ is against fgd measured in this run)")
    print("decisions/s per core: " + ", ".join(f"{k} {v}" for k, v in rates.items()))
    headline = {"benchmark": "packing", "table": table, "decisions_per_s": rates}
    if args.ablation:
        abl = run_ablation(nodes, args.traces, lists, seeds, args.jobs)
        print("\nAblation of the orion policy (unallocated GPU % at 100 / 130 arrived):")
        print(f"{'variant':<34}" + "".join(f"{lst:>15}" for lst in lists))
        for label, row in abl.items():
            print(
                f"{label:<34}"
                + "".join(f"{row[name]['100']:>8.2f}/{row[name]['130']:<6.2f}" for name in lists)
            )
        headline["ablation"] = abl
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
