"""The ``pipelines`` benchmark's workloads, as pipeline specs and as the same work in plain Ray,
and the controller measured in-process. No Ray import at module level (the in-process part and
the unit tests use it without a cluster).

The DAG is layered: ``depth`` layers of ``width`` nodes; each node of layer k > 0 depends on 1 to
3 distinct nodes of layer k - 1 (how many and which drawn from ``random.Random(seed)``, so the
same arguments give the same DAG). Why this shape: a compiler-emitted pipeline is stages of
shards (fetch → features → train per shard, joins of a few upstream shards), not one long chain
nor one flat fan-out; a width of 50 keeps more nodes ready than the cluster has CPUs (both sides
are always saturated), and 20 layers make 20 waves of dependencies to resolve. Every node reads
its upstream values and returns a new one (``_pipeline_tasks.node``), so values really flow.
"""

from __future__ import annotations

import random
import tempfile
import time
from typing import Any, Optional

FN = "benchmarks._pipeline_tasks:node"
MARKED_FN = "benchmarks._pipeline_tasks:marked_node"
ITEM_FN = "benchmarks._pipeline_tasks:item"


def layers(width: int, depth: int, seed: int = 7) -> list[list[tuple[str, list[str]]]]:
    """Each layer's nodes as ``(node id, upstream node ids)``."""
    rng = random.Random(seed)
    out: list[list[tuple[str, list[str]]]] = []
    for k in range(depth):
        row = []
        for i in range(width):
            ups = (
                []
                if k == 0
                else sorted(rng.sample([n for n, _ in out[k - 1]], rng.randint(1, min(3, width))))
            )
            row.append((f"L{k}_{i}", ups))
        out.append(row)
    return out


def dag_spec(
    width: int = 50, depth: int = 20, *, seed: int = 7, function: str = FN, params: Optional[dict] = None
) -> dict[str, Any]:
    """The layered DAG as a pipeline spec: node ``L<k>_<i>`` outputs ``o_L<k>_<i>`` and takes its
    upstream nodes' outputs as inputs; ``params`` are added to every node's (e.g. a marker dir)."""
    nodes, edges = [], []
    for row in layers(width, depth, seed):
        for nid, ups in row:
            nodes.append(
                {
                    "id": nid,
                    "kind": "python_task",
                    "params": {"function": function, "out": f"o_{nid}", **(params or {})},
                    "ins": [f"o_{u}" for u in ups],
                    "outs": [f"o_{nid}"],
                }
            )
            edges += [{"from": u, "to": nid} for u in ups]
    return {"version": 1, "pipeline_id": f"bench_dag_{width}x{depth}", "nodes": nodes, "edges": edges}


def chain_spec(n: int, *, function: str = FN) -> dict[str, Any]:
    """``n`` nodes one after the other (the worst case for a controller that re-reads a run)."""
    spec = dag_spec(1, n, function=function)
    spec["pipeline_id"] = f"bench_chain_{n}"
    return spec


def map_supported() -> bool:
    """Whether the installed engine knows the ``map`` kind (built on its own branch)."""
    from orion_ray.pipelines import kinds

    return "map" in kinds.installed_kinds()


def map_spec(n: int = 10_000, *, concurrency: int = 100) -> dict[str, Any]:
    """One ``map`` node calling ``_pipeline_tasks.item`` once per item of ``range(n)`` (the map
    kind's spec: ``mapspec.py``), at most ``concurrency`` items in flight (the kind's default,
    100: more only queues workloads that cannot run yet, which every scheduling cycle walks)."""
    return {
        "version": 1,
        "pipeline_id": f"bench_map_{n}",
        "nodes": [
            {
                "id": "items",
                "kind": "map",
                "params": {"function": ITEM_FN},
                "outs": ["value"],
                "map": {"with_items": list(range(n)), "concurrency": concurrency},
            }
        ],
        "edges": [],
    }


def expected_sinks(width: int, depth: int, seed: int = 7) -> dict[str, int]:
    """The values the last layer must return (what both sides are checked against)."""
    value: dict[str, int] = {}
    for row in layers(width, depth, seed):
        for nid, ups in row:
            value[nid] = 1 + sum(value[u] for u in ups)
    return {nid: value[nid] for nid, _ in layers(width, depth, seed)[-1]}


def ray_dag(width: int, depth: int, seed: int = 7) -> dict[str, int]:
    """The same DAG as plain Ray tasks from this driver: each node a ``num_cpus=1`` task of the
    same function, its upstream nodes' ``ObjectRef``s passed as keyword arguments (Ray resolves
    those dependencies before the task runs), every node launched in topological order at once,
    then ``ray.get`` of the last layer. Returns the last layer's values."""
    import ray

    from benchmarks._pipeline_tasks import node

    task = ray.remote(num_cpus=1)(node)
    refs: dict[str, Any] = {}
    sinks: list[str] = []
    for row in layers(width, depth, seed):
        sinks = [nid for nid, _ in row]
        for nid, ups in row:
            refs[nid] = task.remote(out=f"o_{nid}", **{f"o_{u}": refs[u] for u in ups})
    return {s: r[f"o_{s}"] for s, r in zip(sinks, ray.get([refs[s] for s in sinks]))}


def ray_map(n: int) -> int:
    """``n`` plain Ray tasks of the same item function, launched at once, then ``ray.get``."""
    import ray

    from benchmarks._pipeline_tasks import item

    task = ray.remote(num_cpus=1)(item)
    return len(ray.get([task.remote(item=i) for i in range(n)]))


def inprocess(spec: dict[str, Any], *, sweep_s: float = 2.0) -> dict[str, Any]:
    """The controller alone over a real SQLite file (no Ray): submit ``spec``, then tick; between
    ticks every node workload the controller submitted is marked completed with its result (as
    the scheduler would, one transition each). Returns ``transitions`` (node state changes the
    controller wrote), ``controller_s`` (time inside ``tick``), ``reconciles``, ``ticks``."""
    from benchmarks._pipeline_tasks import node
    from orion_ray.pipelines import runs_store
    from orion_ray.pipelines.controller import PipelineController
    from orion_ray.pipelines.intake import accept
    from orion_ray.status import Status
    from orion_ray.store import SQLiteStore

    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(f"{d}/orion.db")
        try:
            body = {"dag_spec": spec, "runtime_params": {"submission_id": "bench"}}
            run, ids = accept(body, tenant_id="bench", now=time.time())
            runs_store.create_run(store, run, ids, who="bench")
            ctl = PipelineController(store, sweep_s=sweep_s)
            ticks = 0
            while True:
                ctl.tick()
                ticks += 1
                got = runs_store.get_run(store, run.run_id, body=False)
                if got is None or got.terminal:
                    break
                done = []
                for w in store.list(status=Status.QUEUED.value, limit=100_000):
                    w.status, w.result = Status.COMPLETED, node(**(w.spec.kwargs or {}))
                    done.append((w, (Status.COMPLETED.value, time.time(), "")))
                store.update_many(done)
            return {
                "state": got.status if got else None,
                "transitions": ctl.transitions,
                "controller_s": ctl.busy_s,
                "reconciles": ctl.reconciles,
                "ticks": ticks,
            }
        finally:
            store.close()
