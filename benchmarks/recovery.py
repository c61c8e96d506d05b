"""recovery: SIGKILL the scheduler actor while many workloads are queued or running.

On one private `orion up --num-cpus 2` (fresh ORION_HOME, non-default ports), ``--n`` task workloads
(``benchmarks._tasks:sleep_and_mark``: sleep ``--sleep`` s; each execution appends a line to a
marker file named after the workload) are submitted through ``OrionClient``. Once all are accepted
and at least one is running (the rest queued: 2 CPUs run 2 at a time), the ``orion-scheduler``
actor's process (found through Ray's state API) is killed with SIGKILL, that pid only. Ray restarts
the actor; its constructor recovers from the SQLite store. The default ``--n`` is 200, not the
1,000 of the target scenario, to stay near 5 minutes on 2 cores (each Orion task workload gets a
fresh Ray worker, ~1 workload/s); ``--n 1000`` runs the full scenario in ~18 minutes.

Measured (no baseline: absolute figures against the targets in ../shared/BENCHMARKS.md):
* resume_s: kill -> the first ``starting`` transition written after the kill (read from
  ``$ORION_HOME/orion.db``, opened read-only), i.e. the restarted scheduler admitting work again.
  Also shown: kill -> ``GET /health`` answering 200 again.
* lost: accepted workloads missing from the store, or not ``completed`` once all are terminal
  (or at ``--timeout``); workloads still queued or running at ``--timeout`` are reported apart as
  ``unfinished`` (a short timeout measures resume at 10,000 without waiting for every run).
* doubled: workloads whose ``transitions`` show a ``running`` not preceded by a terminal/``queued``
  since the previous ``running``, or attempts that do not strictly increase across runs.
  Also shown: workloads whose marker file says they executed more than once.
Last stdout line: ``{"benchmark": "recovery", "resume_s", "lost", "doubled"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import time

import httpx

from ._common import add_cluster_args, err, orion_up

TERMINAL = ("completed", "failed", "cancelled")
ACTIVE = ("submitted", "queued", "starting", "running", "preempted")


def db(home: str) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{os.path.join(home, 'orion.db')}?mode=ro", uri=True, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    return con


def counts(con) -> dict[str, int]:
    return dict(con.execute("SELECT status, COUNT(*) FROM workloads GROUP BY status").fetchall())


def scheduler_pid(dashboard_url: str) -> int:
    from ray.util.state import list_actors

    alive = list_actors(
        address=dashboard_url, filters=[("class_name", "=", "SchedulerActor"), ("state", "=", "ALIVE")]
    )
    if len(alive) != 1:
        raise RuntimeError(f"expected one alive SchedulerActor, found {len(alive)}")
    return int(alive[0].pid)


def doubled_runs(con) -> list[str]:
    """Workloads whose transitions show a second run while one was open, or a repeated attempt."""
    bad, state = set(), {}
    rows = con.execute("SELECT workload_id, status, attempt FROM transitions ORDER BY id")
    for wid, status, attempt in rows:
        open_run, last_attempt = state.get(wid, (False, 0))
        if status == "running":
            if open_run or attempt <= last_attempt:
                bad.add(wid)
            state[wid] = (True, attempt)
        elif status in TERMINAL or status in ("queued", "preempted"):
            state[wid] = (False, last_attempt)
    return sorted(bad)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.split("\n")[0])
    p.add_argument(
        "--n",
        type=int,
        default=200,
        help="workloads submitted before the kill (default 200: Orion runs ~1 "
        "trivial task/s on 2 cores, so --n 1000 takes ~18 min)",
    )
    p.add_argument("--sleep", type=float, default=0.05, help="seconds each task sleeps")
    p.add_argument("--timeout", type=float, default=1800, help="give up waiting after this (s)")
    add_cluster_args(p)
    args = p.parse_args()

    from orion_ray.client import OrionClient

    with orion_up(args) as info:
        home, api = info["home"], info["api_url"]
        markers = os.path.join(home, "markers")
        os.makedirs(markers)
        spec = {
            "workload_type": "task",
            "function": "benchmarks._tasks:sleep_and_mark",
            "args": [args.sleep, markers],
            "resources": {"cpu": 1},
        }
        con = db(home)
        with OrionClient() as client:
            err(f"submitting {args.n} workloads ...")
            t0 = time.time()
            accepted = [client.submit_workload(spec).workload_id for _ in range(args.n)]
            submit_s = time.time() - t0
        while counts(con).get("running", 0) < 1:  # make sure a run is in flight
            time.sleep(0.01)
        before = counts(con)
        pid = scheduler_pid(info["dashboard_url"])
        err(f"all accepted in {submit_s:.1f}s; at the kill: {before}; SIGKILL scheduler pid {pid}")
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)

        health_s = resume_s = None
        while resume_s is None or health_s is None:
            if time.time() - t_kill > 120:
                break
            if health_s is None:
                try:
                    if httpx.get(api + "/health", timeout=2).status_code == 200:
                        health_s = time.time() - t_kill
                except httpx.HTTPError:
                    pass
            if resume_s is None:
                (at,) = con.execute(
                    "SELECT MIN(at) FROM transitions WHERE status='starting' AND at > ?", (t_kill,)
                ).fetchone()
                resume_s = None if at is None else at - t_kill
            time.sleep(0.02)
        try:
            new_pid = scheduler_pid(info["dashboard_url"])
        except Exception as exc:  # still restarting (or gone): report it, keep measuring
            new_pid = f"? ({exc})"
        err(
            f"scheduling again after {resume_s}s (health 200 after {health_s}s); "
            f"new pid {new_pid}; waiting for all {args.n} to finish ..."
        )

        deadline, last = time.time() + args.timeout, 0.0
        while True:
            c = counts(con)
            done = sum(c.get(s, 0) for s in TERMINAL)
            if done >= args.n or time.time() > deadline:
                break
            if time.time() - last > 15:
                err(f"  {c}")
                last = time.time()
            time.sleep(0.5)
        total_s = time.time() - t0
        status = dict(con.execute("SELECT workload_id, status FROM workloads").fetchall())
        # lost: missing from the store, or ended without completing; with --timeout shorter than
        # the run (e.g. 10,000 trivial tasks at a few per second), work still queued or running is
        # reported apart as unfinished, not lost
        lost = [w for w in accepted if status.get(w) not in ("completed", *ACTIVE)]
        unfinished = [w for w in accepted if status.get(w) in ACTIVE]
        doubled = doubled_runs(con)
        restarts = dict(
            con.execute(
                "SELECT workload_id, COUNT(*) FROM transitions WHERE status='running' GROUP BY workload_id"
            ).fetchall()
        )
        requeued = con.execute(
            "SELECT COUNT(*) FROM transitions WHERE reason LIKE 'lost on restart%'"
        ).fetchone()[0]
        con.close()
        runs = {}
        for name in os.listdir(markers):
            with open(os.path.join(markers, name)) as f:
                runs[name] = sum(1 for _ in f)
        executed_twice = sorted(w for w, k in runs.items() if k > 1)
        never_ran = [w for w in accepted if status.get(w) == "completed" and w not in runs]

    print(
        f"\nrecovery: {args.n} workloads (1 CPU, sleep {args.sleep:g}s) on {args.num_cpus:g} CPUs; "
        f"scheduler actor SIGKILLed (pid {pid} -> {new_pid})"
    )
    table = [
        ("submitted (all accepted) in", f"{submit_s:.1f} s"),
        ("status at the kill", json.dumps(before)),
        ("kill -> first 'starting' (resume_s)", "never" if resume_s is None else f"{resume_s:.2f} s"),
        ("kill -> GET /health 200", "never" if health_s is None else f"{health_s:.2f} s"),
        ("requeued on restart as lost", str(requeued)),
        ("all terminal after (from first submit)", f"{total_s:.1f} s"),
        ("lost (accepted, missing or not completed)", str(len(lost))),
        ("unfinished at --timeout (still queued/running)", str(len(unfinished))),
        ("doubled (transitions)", str(len(doubled))),
        ("entered running more than once", str(sum(1 for k in restarts.values() if k > 1))),
        ("executed more than once (markers)", str(len(executed_twice))),
        ("completed without executing (markers)", str(len(never_ran))),
    ]
    for k, v in table:
        print(f"  {k:42}{v}")
    for label, ids in (("lost", lost), ("doubled", doubled), ("executed twice", executed_twice)):
        if ids:
            print(f"  {label}: {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}")
    print(
        json.dumps(
            {
                "benchmark": "recovery",
                "resume_s": None if resume_s is None else round(resume_s, 3),
                "lost": len(lost),
                "doubled": len(doubled),
                "unfinished": len(unfinished),
                "n": args.n,
            }
        )
    )


if __name__ == "__main__":
    main()
