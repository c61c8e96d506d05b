"""pipelines: a 1,000-node DAG (and a 10,000-item map) of trivial tasks through Orion's pipelines,
against the same work as plain Ray tasks from one driver; the controller's speed; SIGKILL mid-run.

What is measured, on one private `orion up --num-cpus 2` (fresh ORION_HOME, non-default ports,
``scheduler.pin_single_bundle_tasks`` on as in the e2e benchmark's ``--pin``):

* DAG (``_pipeline_dags.dag_spec``): ``--width`` x ``--depth`` (50 x 20 = 1,000) layered nodes,
  each depending on 1-3 nodes of the layer before; every node runs
  ``benchmarks._pipeline_tasks:node`` (returns ``{out: 1 + sum of its inputs}``), 1 CPU.
  Orion: the run submitted with ``OrionClient.submit_pipeline``; time = its ``finished_at`` minus
  the moment before the submit. Plain Ray, same cluster, same driver process: the same function as
  ``num_cpus=1`` tasks, upstream ``ObjectRef``s as arguments, all launched at once in topological
  order, then ``ray.get`` of the last layer (``_pipeline_dags.ray_dag``). Both sides' last-layer
  values are checked against the expected ones.
* Map (``_pipeline_dags.map_spec``): one ``map`` node over ``--map-items`` items of
  ``_pipeline_tasks:item`` (``--map-concurrency`` in flight, the kind's default 100), against as
  many plain Ray tasks launched at once. Skipped, with a note in the output,
  when the installed engine does not know the ``map`` kind.
* Also once: Orion with the same nodes and no edges (one layer), to tell what the dependencies
  cost from what every workload costs.
* ratio = plain Ray's time / Orion's time (a throughput ratio), medians over ``--repeats``
  (order alternating); the headline ``ratio`` is the worse of the DAG's and the map's.
* transitions_per_s: node state changes the controller wrote per second of its own time (inside
  its ticks), live from ``/health``'s ``pipelines`` counters over the DAG runs, and in-process
  (the controller alone over a real SQLite file, node workloads completed by the harness:
  ``_pipeline_dags.inprocess``), median over repeats; the headline is the live figure.
* SIGKILL: the DAG again, each node appending a line to a marker file; once some nodes have
  succeeded, the scheduler actor's process (the controller's host) is killed with SIGKILL.
  resume_s = kill -> the first node transition written after it (``node_runs`` times and the run's
  ``updated_at`` in ``$ORION_HOME/orion.db``, read-only); lost = nodes not succeeded when the run
  ends; doubled = nodes whose function ran more than once (marker lines).

``--quick``: a 10 x 5 DAG, 200 map items, one repeat. Last stdout line: one JSON object with
``benchmark``, ``ratio``, ``transitions_per_s``, ``resume_s``, ``lost``, ``doubled`` (top level),
then the details.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import time
from typing import Any, Optional

from . import _pipeline_dags as dags
from ._common import add_cluster_args, err, median, orion_up, ts
from .recovery import scheduler_pid

TERMINAL = ("succeeded", "failed", "cancelled")


def wait_run(client: Any, sid: str, timeout: float, poll_s: float = 0.2) -> dict:
    """Poll the run until it ends (or ``timeout`` passes: the caller sees its state)."""
    end = time.time() + timeout
    while True:
        st = client.pipeline_status(sid)
        if st["state"] in TERMINAL or time.time() > end:
            return st
        time.sleep(poll_s)


def counters(api: str) -> dict:
    import httpx

    return httpx.get(api + "/health", timeout=10).json().get("pipelines") or {}


def orion_run(client: Any, spec: dict, sid: str, timeout: float) -> tuple[float, dict]:
    t0 = time.time()
    client.submit_pipeline(spec, {"submission_id": sid})
    st = wait_run(client, sid, timeout)
    if st["state"] != "succeeded":
        raise RuntimeError(f"run {sid} ended {st['state']}: {st.get('error')}")
    return ts(st["finished_at"]) - t0 if isinstance(st["finished_at"], str) else st["finished_at"] - t0, st


def check_sinks(client: Any, st: dict, expected: dict[str, int]) -> None:
    """The last layer's values, read from the node workloads' results."""
    by_id = {n["node_id"]: n for n in st["nodes"]}
    for nid, want in expected.items():
        got = client.get_workload(by_id[nid]["workload_id"])["result"][f"o_{nid}"]
        if got != want:
            raise RuntimeError(f"node {nid} returned {got}, expected {want}")


def kill_run(client: Any, info: dict, spec_args: tuple[int, int], timeout: float) -> dict:
    """The marked DAG, the scheduler SIGKILLed once some nodes succeeded; resume, lost, doubled."""
    home = info["home"]
    markers = os.path.join(home, "markers")
    os.makedirs(markers, exist_ok=True)
    width, depth = spec_args
    spec = dags.dag_spec(width, depth, function=dags.MARKED_FN, params={"marker_dir": markers})
    sid = "kill-run"
    client.submit_pipeline(spec, {"submission_id": sid})
    con = sqlite3.connect(f"file:{os.path.join(home, 'orion.db')}?mode=ro", uri=True, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    (run_id,) = con.execute("SELECT run_id FROM pipeline_runs WHERE submission_id=?", (sid,)).fetchone()
    total = width * depth
    pid = scheduler_pid(info["dashboard_url"])  # looked up first: the kill must land mid-run
    while True:  # mid-run: a tenth of the nodes done, most still to go
        (done,) = con.execute(
            "SELECT COUNT(*) FROM node_runs WHERE run_id=? AND status='succeeded'", (run_id,)
        ).fetchone()
        if done >= max(1, total // 10):
            break
        time.sleep(0.02)
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    err(f"{done}/{total} nodes succeeded; SIGKILLed scheduler pid {pid}")
    resume_s: Optional[float] = None
    while resume_s is None and time.time() - t_kill < 120:
        (at,) = con.execute(
            "SELECT MIN(t) FROM (SELECT started_at AS t FROM node_runs WHERE run_id=? AND started_at > ? "
            "UNION ALL SELECT finished_at FROM node_runs WHERE run_id=? AND finished_at > ? "
            "UNION ALL SELECT updated_at FROM pipeline_runs WHERE run_id=? AND updated_at > ?)",
            (run_id, t_kill, run_id, t_kill, run_id, t_kill),
        ).fetchone()
        if at is not None:
            resume_s = at - t_kill
            break
        (state,) = con.execute("SELECT status FROM pipeline_runs WHERE run_id=?", (run_id,)).fetchone()
        if state in TERMINAL:  # it ended before the kill landed: nothing to resume
            break
        time.sleep(0.02)
    st = wait_run(client, sid, timeout, poll_s=0.5)
    con.close()
    runs = {}
    for name in os.listdir(markers):
        with open(os.path.join(markers, name)) as f:
            runs[name] = sum(1 for _ in f)
    lost = [n["node_id"] for n in st["nodes"] if n["state"] != "succeeded"]
    doubled = sorted(k for k, v in runs.items() if v > 1)
    never = [
        n["node_id"] for n in st["nodes"] if n["state"] == "succeeded" and f"o_{n['node_id']}" not in runs
    ]
    return {
        "resume_s": resume_s,
        "lost": lost,
        "doubled": doubled,
        "never_ran": never,
        "state": st["state"],
        "done_at_kill": done,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipelines", description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=50)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--map-items", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--map-concurrency", type=int, default=100, help="the map node's concurrency")
    p.add_argument("--map-repeats", type=int, default=None, help="repeats of the map (default: --repeats)")
    p.add_argument("--quick", action="store_true", help="10 x 5 DAG, 200 map items, one repeat")
    p.add_argument("--no-kill", action="store_true", help="skip the SIGKILL run")
    p.add_argument("--no-map", action="store_true", help="skip the map even when the engine has it")
    p.add_argument("--timeout", type=float, default=1800, help="give up waiting for a run after this (s)")
    add_cluster_args(p)
    args = p.parse_args()
    if args.quick:
        args.width, args.depth, args.map_items, args.repeats = 10, 5, 200, 1
    args.pin = True  # e2e's --pin: single-bundle tasks pinned to their node, no group each
    shape = (args.width, args.depth)
    spec = dags.dag_spec(*shape)
    expected = dags.expected_sinks(*shape)

    err("in-process controller ...")
    inproc = [dags.inprocess(spec) for _ in range(args.repeats)]
    chain = [dags.inprocess(dags.chain_spec(200)) for _ in range(args.repeats)]
    ip_rate = median([r["transitions"] / r["controller_s"] for r in inproc])
    chain_rate = median([r["transitions"] / r["controller_s"] for r in chain])

    has_map = dags.map_supported() and not args.no_map
    map_note = (
        None
        if has_map
        else ("skipped: --no-map" if args.no_map else "skipped: the installed engine has no map kind")
    )
    orion_dag: list[float] = []
    ray_dag: list[float] = []
    orion_map: list[float] = []
    ray_map: list[float] = []
    kill: dict = {}
    from orion_ray.client import OrionClient

    with orion_up(args) as info:
        import ray  # after `orion up` has set Ray's auth mode for this process

        ray.init(address=info["ray_address"], logging_level=logging.WARNING, log_to_driver=False)
        with OrionClient() as client:
            err("warm-up (workers started on both sides) ...")
            orion_run(client, dags.dag_spec(4, 2), "warm-up", args.timeout)
            dags.ray_dag(4, 2)
            before = counters(info["api_url"])
            for r in range(args.repeats):
                for side in ("orion", "ray") if r % 2 == 0 else ("ray", "orion"):
                    if side == "orion":
                        s, st = orion_run(client, spec, f"dag-{r}", args.timeout)
                        check_sinks(client, st, expected)
                        orion_dag.append(s)
                    else:
                        t0 = time.time()
                        got = dags.ray_dag(*shape)
                        ray_dag.append(time.time() - t0)
                        if got != expected:
                            raise RuntimeError("plain Ray's DAG returned other values")
                    err(f"  repeat {r} {side} DAG: {(orion_dag if side == 'orion' else ray_dag)[-1]:.2f} s")
            after = counters(info["api_url"])
            # the same number of nodes with no edges at all: what the dependencies cost Orion
            flat_s = orion_run(client, dags.dag_spec(args.width * args.depth, 1), "flat", args.timeout)[0]
            err(f"  flat (no edges) orion: {flat_s:.2f} s")
            live_tr = after.get("transitions", 0) - before.get("transitions", 0)
            live_busy = after.get("busy_s", 0.0) - before.get("busy_s", 0.0)
            live_cpu = after.get("cpu_s", 0.0) - before.get("cpu_s", 0.0)
            live_rec = after.get("reconciles", 0) - before.get("reconciles", 0)
            live_ticks = after.get("ticks", 0) - before.get("ticks", 0)
            map_repeats = args.repeats if args.map_repeats is None else args.map_repeats
            for r in range(map_repeats if has_map else 0):
                for side in ("orion", "ray") if r % 2 == 0 else ("ray", "orion"):
                    if side == "orion":
                        orion_map.append(
                            orion_run(
                                client,
                                dags.map_spec(args.map_items, concurrency=args.map_concurrency),
                                f"map-{r}",
                                args.timeout,
                            )[0]
                        )
                    else:
                        t0 = time.time()
                        dags.ray_map(args.map_items)
                        ray_map.append(time.time() - t0)
                    err(f"  repeat {r} {side} map: {(orion_map if side == 'orion' else ray_map)[-1]:.2f} s")
            if not args.no_kill:
                kill = kill_run(client, info, shape, args.timeout)
        ray.shutdown()

    dag_ratio = median(ray_dag) / median(orion_dag)
    map_ratio = median(ray_map) / median(orion_map) if orion_map else None
    ratio = dag_ratio if map_ratio is None else min(dag_ratio, map_ratio)
    live_rate = live_tr / live_busy if live_busy > 0 else None
    n = args.width * args.depth
    print(f"\npipelines: {n}-node DAG ({args.width} x {args.depth}), {args.num_cpus:g} CPUs, x{args.repeats}")
    rows = [
        ("DAG: Orion (median)", f"{median(orion_dag):.2f} s  ({n / median(orion_dag):.1f} nodes/s)"),
        ("DAG: plain Ray (median)", f"{median(ray_dag):.2f} s  ({n / median(ray_dag):.1f} nodes/s)"),
        ("DAG ratio (Ray time / Orion time)", f"{dag_ratio:.3f}"),
        ("Orion, the same nodes with no edges (once)", f"{flat_s:.2f} s  ({n / flat_s:.1f} nodes/s)"),
        (
            f"map {args.map_items}: Orion / Ray",
            map_note or f"{median(orion_map):.2f} s / {median(ray_map):.2f} s (ratio {map_ratio:.3f})",
        ),
        (
            "controller, live: transitions / its time",
            f"{live_tr} / {live_busy:.3f} s = {live_rate or 0:.0f}/s",
        ),
        ("controller, live: reconciles, ticks", f"{live_rec}, {live_ticks}"),
        (
            "controller, live: per CPU second",
            f"{live_tr / live_cpu if live_cpu > 0 else 0:.0f}/s ({live_cpu:.3f} s)",
        ),
        ("controller, in-process DAG (median)", f"{ip_rate:.0f} transitions/s"),
        ("controller, in-process 200-chain (median)", f"{chain_rate:.0f} transitions/s"),
    ]
    if kill:
        rs = kill["resume_s"]
        rows += [
            ("SIGKILL: nodes done at the kill", str(kill["done_at_kill"])),
            ("SIGKILL: resume (kill -> next transition)", "never" if rs is None else f"{rs:.2f} s"),
            ("SIGKILL: run ended", kill["state"]),
            (
                "SIGKILL: lost / run twice / never ran",
                f"{len(kill['lost'])} / {len(kill['doubled'])} / {len(kill['never_ran'])}",
            ),
        ]
    for k, v in rows:
        print(f"  {k:44}{v}")
    print(
        json.dumps(
            {
                "benchmark": "pipelines",
                "ratio": round(ratio, 4),
                "transitions_per_s": None if live_rate is None else round(live_rate, 1),
                "resume_s": None if not kill or kill["resume_s"] is None else round(kill["resume_s"], 3),
                "lost": len(kill["lost"]) if kill else None,
                "doubled": len(kill["doubled"]) if kill else None,
                "dag_ratio": round(dag_ratio, 4),
                "map_ratio": None if map_ratio is None else round(map_ratio, 4),
                "map": map_note or "measured",
                "orion_dag_s": round(median(orion_dag), 3),
                "ray_dag_s": round(median(ray_dag), 3),
                "orion_flat_s": round(flat_s, 3),
                "map_concurrency": args.map_concurrency,
                "inprocess_transitions_per_s": round(ip_rate, 1),
                "inprocess_chain200_transitions_per_s": round(chain_rate, 1),
                "live_reconciles": live_rec,
                "live_controller_s": round(live_busy, 3),
                "live_controller_cpu_s": round(live_cpu, 3),
                "nodes": n,
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
