"""In-process figure for the pipeline controller's fan-out (issue 16): one run with a ``map`` node
of N trivial items over a real SQLite file, no Ray; each item's workload is completed by hand
right after the tick that launched it (as ``tests/unit/test_pipeline_map.py`` does), so what is
timed is the controller: launches (workloads submitted in the reconcile's one transaction),
settles from the transitions feed, counters, the fan-in.

    python -m benchmarks.pipeline_map_controller --items 10000 --concurrency 500

Prints items/s and item transitions/s (a launch and a settle per item), controller time only and
wall time (the fake completions included).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from orion_ray.pipelines import map_store
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.status import Status
from orion_ray.store import SQLiteStore


def body(n: int, concurrency: int) -> dict:
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "bench-map",
            "nodes": [
                {
                    "id": "square",
                    "kind": "map",
                    "params": {"function": "tests.pipelines.nodes_map:square"},
                    "outs": ["value"],
                    "map": {"with_items": list(range(n)), "concurrency": concurrency},
                }
            ],
        },
        "runtime_params": {"submission_id": "bench"},
    }


def complete(store: SQLiteStore, run_id: str) -> int:
    """Every item in flight completed, in one write (the scheduler's batch of endings)."""
    changes = []
    for wid in map_store.inflight_workloads(store, run_id, "square"):
        w = store.get(wid)
        if w is None or w.status.terminal:
            continue
        w.status, w.result = Status.COMPLETED, {"value": w.spec.kwargs["item"] % 7}
        changes.append((w, (Status.COMPLETED.value, time.time(), "")))
    store.update_many(changes)
    return len(changes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=500)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(str(Path(tmp) / "orion.db"))
        run, ids = accept(body(a.items, a.concurrency), tenant_id="bench", now=time.time())
        runs.create_run(store, run, ids, who="bench")
        ctl = PipelineController(store, max_queue_size=1_000_000, sweep_s=3600)
        in_ctl = 0.0
        wall = time.perf_counter()
        ticks = 0
        while runs.get_run(store, run.run_id).status == "running":
            t = time.perf_counter()
            ctl.tick()
            in_ctl += time.perf_counter() - t
            ticks += 1
            complete(store, run.run_id)
        wall = time.perf_counter() - wall
        final = runs.get_run(store, run.run_id)
        out = runs.node_runs(store, run.run_id)[0].outputs or {}
        ok = final.status == "succeeded" and out.get("value") == [i % 7 for i in range(a.items)]
        workloads = len(store.list(limit=a.items + 10))
        store.close()
    print(
        json.dumps(
            {
                "items": a.items,
                "concurrency": a.concurrency,
                "ticks": ticks,
                "state": final.status,
                "error": final.error,
                "fan_in_ok": ok,
                "workloads": workloads,
                "item_transitions": ctl.item_transitions,
                "controller_s": round(in_ctl, 3),
                "wall_s": round(wall, 3),
                "items_per_s_controller": round(a.items / in_ctl, 1),
                "transitions_per_s_controller": round(ctl.item_transitions / in_ctl, 1),
                "items_per_s_wall": round(a.items / wall, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
