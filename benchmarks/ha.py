"""RTO of control-plane failover: seconds from a kill on the head until Orion accepts a new workload
and runs it again, on a head with GCS fault tolerance on a real Redis (`orion.ha.gcs_ft: redis`).

Three kills, each ``--repeats`` times: the GCS alone (Orion's supervisor restarts it), Orion's
scheduler and autoscaler actors alone (Ray restarts them; the scheduler takes the lease and recovers
from the store), and both at once (the head's control processes lost together: ``rto_s``). Every
probe workload must end completed and run once (``lost``, ``doubled``).

Run from the project root: ``python -m benchmarks.ha [--repeats 3]`` (needs ``redis-server``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.ha.drill import Orion, kill_gcs, kill_orion_actors, restarted, runs
from tests.live_orion import orion_up

CONFIG = "orion:\n  ha: {gcs_ft: redis, lease_ttl_s: 10}\n"


def err(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ha", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="orion-bench-ha-"))
    times: dict[str, list[float]] = {"gcs": [], "actors": [], "both": []}
    probes: list[str] = []
    with orion_up(home, CONFIG, {}, num_cpus=2) as (creds, _env, _ports):
        root = int(json.loads((home / "cluster.json").read_text())["pid"])
        orion = Orion(creds["url"], creds["api_key"])
        orion.schedules_again(time.time())  # warm: a first task worker exists
        for r in range(args.repeats):
            for kind in times:
                t0 = time.time()
                if kind in ("gcs", "both"):
                    old = kill_gcs(root)
                if kind in ("actors", "both"):
                    kill_orion_actors(root)
                rto = orion.schedules_again(t0)
                if kind in ("gcs", "both"):
                    restarted(root, "gcs_server", old)
                times[kind].append(rto)
                err(f"repeat {r + 1}: kill {kind:6s} → schedules again after {rto:.2f}s")
                time.sleep(2.0)  # let the restarted actors settle before the next kill
        # every probe of the run: the ones the kills measured plus one submitted now
        last = orion.submit({"workload_type": "task", "function": "math:factorial", "args": [3]})
        orion.wait(last, ("completed",), 120)
        rows = orion.http.get("/api/v1/workloads", params={"limit": 200}).json()["items"]
        probes = [w["workload_id"] for w in rows]
        for wid in probes:
            orion.wait(wid, ("completed", "failed", "cancelled"), 120)
        finals = {wid: orion.get(wid)["status"] for wid in probes}
        lost = sum(1 for s in finals.values() if s != "completed")
        doubled = sum(1 for wid in probes if runs(home, wid) > 1)
    print(f"{'kill':8s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for kind, xs in times.items():
        print(f"{kind:8s} {statistics.median(xs):9.2f} {min(xs):7.2f} {max(xs):7.2f}")
    out = {
        "benchmark": "ha",
        "rto_s": round(statistics.median(times["both"]), 2),
        "rto_gcs_s": round(statistics.median(times["gcs"]), 2),
        "rto_scheduler_s": round(statistics.median(times["actors"]), 2),
        "repeats": args.repeats,
        "probes": len(probes),
        "lost": lost,
        "doubled": doubled,
        "samples_s": {kind: [round(x, 2) for x in xs] for kind, xs in times.items()},  # the spread
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
