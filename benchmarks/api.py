"""api: HTTP load on the REST API from a second process on loopback, against no-op routes.

One private `orion up` (fresh ORION_HOME, non-default ports, ``scheduler.max_queue_size`` raised
so no 429 happens), then the ``orion-api`` Serve app is redeployed under the same name exactly as
``orion up`` deploys it (``build_api_app``: the replica reads the store and writes submissions
there) plus two benchmark-only routes: ``GET /bench/noop`` and ``POST /bench/noop`` (reads and
parses the same body as a submission), with no auth, no store and no actor call.

The queue is pre-filled to fixed depths (2,000, then 10,000: ``--depths``), written straight to
the store as API replicas write submissions, and measured at each depth. Load comes from another
process: ``wrk`` when it is on PATH, else a Python load generator with keep-alive connections in
threads. Four kinds, each ``--duration`` seconds with ``--concurrency`` connections, in a rotating
order, ``--repeats`` times per depth:

* ``post``: ``POST /api/v1/workloads``, a trivial task asking for a resource no node has
  (``custom: {"bench-never": 1}``), so the scheduler only queues it and nothing runs;
* ``get``: ``GET /api/v1/workloads/{id}`` over workloads spread through the queue;
* ``noop``/``noop_post``: the baselines of the same method.

Then the fill phase: a burst of ``--fill`` workloads lands in the store at once (as many
replicas would write them) and GET load runs while the scheduler takes them in and cycles over
the grown queue; its GET p99 is ``get_p99_during_fill_ms``. (Nothing is admitted: placement
groups and task processes for thousands of workloads do not fit a 2-core box.)

Figures are medians over repeats: requests/s, p50/p99 latency, ratio to the no-op of the same
method (the worse of the depths in the last line), 5xx count.
The last line of stdout is one JSON object (see ../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from fastapi import Request  # at module level: FastAPI resolves route annotations here

from ._common import err, median, pct

APP_NAME = "orion-api"
SPEC = {
    "workload_type": "task",
    "function": "benchmarks._tasks:started_at",
    "resources": {"cpu": 0.1, "custom": {"bench-never": 1}},
}
KINDS = ("noop", "get", "noop_post", "post")
BASELINE = {"get": "noop", "post": "noop_post"}


# -- the Serve app with the benchmark's extra routes -----------------------------------------------
def noop_routes(app) -> None:
    """``GET /bench/noop`` and ``POST /bench/noop`` (reads and parses the body): no auth,
    no store, no actor call."""
    import json as _json

    @app.get("/bench/noop", include_in_schema=False)
    async def noop():
        return {"ok": True}

    @app.post("/bench/noop", include_in_schema=False)
    async def noop_post(request: Request):
        body = _json.loads(await request.body())
        return {"ok": bool(body)}


def deploy_with_noop(ray_address: str, api_key: str, cfg) -> None:
    """Redeploy ``orion-api`` exactly as ``orion up`` does, plus the no-op routes."""
    import ray
    from ray import serve

    from orion_ray.api.auth import hash_key
    from orion_ray.api.serve_app import build_api_app
    from orion_ray.cluster import api_store_options

    ray.init(address=ray_address, namespace="orion", log_to_driver=False)
    try:
        serve.run(
            build_api_app(
                [hash_key(api_key)],
                cfg.orion.api.max_body_bytes,
                **api_store_options(cfg),
                extra_routes=noop_routes,
            ),
            name=APP_NAME,
            route_prefix="/",
            blocking=False,
        )
    finally:
        ray.shutdown()


# -- load generators (run in a second process) ------------------------------------------------------
WRK_LUA = r"""
mode, idsfile, auth, body = "%(mode)s", "%(ids)s", "Bearer %(key)s", '%(body)s'
e5, e4, n, ids, threads = 0, 0, 0, {}, {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  if mode == "get" then for line in io.lines(idsfile) do ids[#ids + 1] = line end end
end
function request()
  if mode == "noop_post" then
    return wrk.format("POST", "/bench/noop", {["Content-Type"] = "application/json"}, body)
  elseif mode == "post" then
    return wrk.format("POST", "/api/v1/workloads",
                      {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
  elseif mode == "get" then
    n = n + 1
    return wrk.format("GET", "/api/v1/workloads/" .. ids[(n %% #ids) + 1], {["Authorization"] = auth})
  end
  return wrk.format("GET", "/bench/noop")
end
function response(status, headers, b)
  if status >= 500 then e5 = e5 + 1 elseif status >= 400 then e4 = e4 + 1 end
end
function done(summary, latency, requests)
  local t5, t4 = 0, 0
  for _, t in ipairs(threads) do t5 = t5 + t:get("e5"); t4 = t4 + t:get("e4") end
  local errs = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "seconds": %%f, "p50_ms": %%f, ' ..
    '"p99_ms": %%f, "e5": %%d, "e4": %%d, "socket_errors": %%d}\n', summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, t5, t4,
    errs.connect + errs.read + errs.write + errs.timeout))
end
"""


def run_wrk(port: int, key: str, mode: str, ids_path: str, seconds: float, conns: int, workdir: str) -> dict:
    script = os.path.join(workdir, f"{mode}.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA % {"mode": mode, "ids": ids_path, "key": key, "body": json.dumps(SPEC)})
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            script,
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[len("WRKJSON ") :])
    return {
        "rps": r["requests"] / r["seconds"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "e5": r["e5"],
        "e4": r["e4"] + r["socket_errors"],
        "requests": r["requests"],
    }


def python_worker(port: int, key: str, mode: str, ids_path: str, seconds: float, conns: int) -> dict:
    """Keep-alive ``http.client`` connections in threads (the fallback when there is no wrk)."""
    ids = open(ids_path).read().split() if mode == "get" else []
    auth = {"Authorization": f"Bearer {key}"}
    body = json.dumps(SPEC)
    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, seen, n = [], {}, i
        while time.perf_counter() < stop_at:
            n += conns
            t = time.perf_counter()
            if mode == "post":
                conn.request("POST", "/api/v1/workloads", body, {**auth, "Content-Type": "application/json"})
            elif mode == "noop_post":
                conn.request("POST", "/bench/noop", body, {"Content-Type": "application/json"})
            elif mode == "get":
                conn.request("GET", f"/api/v1/workloads/{ids[n % len(ids)]}", headers=auth)
            else:
                conn.request("GET", "/bench/noop")
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            seen[r.status] = seen.get(r.status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            for c, k in seen.items():
                codes[c] = codes.get(c, 0) + k

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "e5": sum(k for c, k in codes.items() if c >= 500),
        "e4": sum(k for c, k in codes.items() if 400 <= c < 500),
        "requests": len(lat),
    }


def load(
    tool: str, port: int, key: str, mode: str, ids_path: str, seconds: float, conns: int, workdir: str
) -> dict:
    """One measured phase, always from another process."""
    if tool == "wrk":
        return run_wrk(port, key, mode, ids_path, seconds, conns, workdir)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.api",
        "--worker",
        json.dumps([port, key, mode, ids_path, seconds, conns]),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load worker failed: {out.stderr[-1000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------------------------
def wait_ok(port: int, path: str, wait_s: float = 120) -> None:
    import httpx

    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{path} did not answer 200 within {wait_s:g}s")


def prefill(path: str, n: int) -> list[str]:
    """``n`` more queued workloads, written to the store as API replicas write submissions
    (one transaction each); the scheduler takes them in by ``seq``. Returns their ids."""
    from orion_ray.models import WorkloadSpec
    from orion_ray.scheduler.ingest import new_workload
    from orion_ray.store import SQLiteStore

    store = SQLiteStore(path)
    spec = WorkloadSpec.model_validate(SPEC)
    try:
        return [
            store.submit(new_workload(spec, "default", time.time()), who="bench", max_queue_size=10**9)[
                0
            ].workload_id
            for _ in range(n)
        ]
    finally:
        store.close()


def queued(path: str) -> int:
    from orion_ray.store import SQLiteStore

    store = SQLiteStore(path, read_only=True)
    try:
        return store.count_queued(10**9)
    finally:
        store.close()


def wait_taken(port: int, n: int, wait_s: float = 300) -> dict:
    """Until the scheduler holds ``n`` workloads (it tails the store); its /health."""
    import httpx

    deadline = time.time() + wait_s
    while True:
        h = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
        if (h.get("active") or 0) >= n or time.time() > deadline:
            return h
        time.sleep(0.5)


def measure_depth(args, key: str, workdir: str, tool: str, db: str, depth: int, ids: list[str]) -> dict:
    """Every kind at one queue depth (GETs over workloads spread through the queue)."""
    have = queued(db)
    if have < depth:
        ids += prefill(db, depth - have)
    h = wait_taken(args.port, queued(db))
    err(f"depth {depth}: {queued(db)} queued, the scheduler holds {h.get('active')}")
    step = max(1, len(ids) // args.get_pool)
    ids_path = os.path.join(workdir, f"ids-{depth}.txt")
    with open(ids_path, "w") as f:
        f.write("\n".join(ids[::step][: args.get_pool]) + "\n")
    for kind in KINDS:  # warm-up, not counted
        load(tool, args.port, key, kind, ids_path, 2, args.concurrency, workdir)
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    for rep in range(args.repeats):
        order = KINDS[rep % len(KINDS) :] + KINDS[: rep % len(KINDS)]
        for kind in order:
            r = load(tool, args.port, key, kind, ids_path, args.duration, args.concurrency, workdir)
            runs[kind].append(r)
            err(
                f"  {depth} repeat {rep + 1} {kind:9s}: {r['rps']:8.1f} req/s  p50 "
                f"{r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  4xx {r['e4']}  5xx {r['e5']}"
            )
    summary = {
        k: {m: median([r[m] for r in rs]) for m in ("rps", "p50_ms", "p99_ms")} for k, rs in runs.items()
    }
    return {
        "depth": depth,
        "queued_after": queued(db),
        "summary": summary,
        "ratios": {k: summary[k]["rps"] / summary[b]["rps"] for k, b in BASELINE.items()},
        "e5": sum(r["e5"] for rs in runs.values() for r in rs),
        "e4": sum(r["e4"] for rs in runs.values() for r in rs),
    }


def measure_fill(args, key: str, workdir: str, tool: str, db: str) -> dict:
    """GET load while a burst of ``--fill`` arrivals is taken in and cycled over."""
    ids = prefill(db, args.fill)  # lands at once; the scheduler starts on it within a tick
    ids_path = os.path.join(workdir, "ids-fill.txt")
    with open(ids_path, "w") as f:
        f.write("\n".join(ids[:: max(1, len(ids) // args.get_pool)]) + "\n")
    r = load(tool, args.port, key, "get", ids_path, args.fill_duration, args.concurrency, workdir)
    h = wait_taken(args.port, queued(db), wait_s=5)
    err(
        f"fill of {args.fill}: GET {r['rps']:.1f} req/s p50 {r['p50_ms']:.2f} ms p99 "
        f"{r['p99_ms']:.2f} ms 5xx {r['e5']}; scheduler then held {h.get('active')}, "
        f"{h.get('cycles')} cycles, last {json.dumps(h.get('last_cycle'))[:300]}"
    )
    return {"get": r, "e5": r["e5"], "e4": r["e4"]}


def measure(args, key: str, workdir: str) -> dict:
    tool = "wrk" if shutil.which("wrk") and not args.python_load else "python"
    err(f"load generator: {tool}, {args.concurrency} connections, {args.duration:g}s per phase")
    db = os.path.join(workdir, "orion.db")
    ids: list[str] = []
    depths = [measure_depth(args, key, workdir, tool, db, d, ids) for d in args.depths]
    fill = measure_fill(args, key, workdir, tool, db) if args.fill else None
    return {
        "tool": tool,
        "depths": depths,
        "fill": fill,
        "errors_5xx": sum(d["e5"] for d in depths) + (fill["e5"] if fill else 0),
        "errors_4xx": sum(d["e4"] for d in depths) + (fill["e4"] if fill else 0),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8200, help="Orion API port")
    p.add_argument("--ray-port", type=int, default=6395)
    p.add_argument("--dashboard-port", type=int, default=8285)
    p.add_argument("--num-cpus", type=float, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per measured phase")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--depths",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[2000, 10000],
        help="queue depths to measure at (comma-separated)",
    )
    p.add_argument("--fill", type=int, default=10000, help="arrivals in the fill burst (0: skip)")
    p.add_argument("--fill-duration", type=float, default=10.0)
    p.add_argument("--get-pool", type=int, default=200, help="workloads the GET phase reads")
    p.add_argument("--python-load", action="store_true", help="use the Python load generator")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # the load-generating process
        print(json.dumps(python_worker(*json.loads(args.worker))))
        return

    from orion_ray.cluster import down, up
    from orion_ray.config import OrionConfig
    from orion_ray.credentials import read_credentials

    home = tempfile.mkdtemp(prefix="orion-bench-api-")
    os.environ.update(ORION_HOME=home, RAY_AUTH_MODE="disabled")
    for var in ("ORION_URL", "ORION_API_KEY"):
        os.environ.pop(var, None)
    cfg = OrionConfig()
    cfg.orion.api.port = args.port
    cfg.orion.scheduler.max_queue_size = 1_000_000
    try:
        err(f"orion up (ORION_HOME={home}, API :{args.port}, Ray :{args.ray_port}) ...")
        info = up(
            cfg, num_cpus=args.num_cpus, ray_port=args.ray_port, dashboard_port=args.dashboard_port, say=err
        )
        key = read_credentials()["api_key"]
        deploy_with_noop(info["ray_address"], key, cfg)
        wait_ok(args.port, "/bench/noop")
        wait_ok(args.port, "/health")
        res = measure(args, key, home)
    finally:
        down(say=err)
        shutil.rmtree(home, ignore_errors=True)

    err(f"\napi ({res['tool']}, medians of {args.repeats}):")
    for d in res["depths"]:
        s = d["summary"]
        err(
            f"  depth {d['depth']} (queued after: {d['queued_after']}): post ratio "
            f"{d['ratios']['post']:.3f}, get ratio {d['ratios']['get']:.3f}"
        )
        for k in KINDS:
            err(
                f"    {k:9s} {s[k]['rps']:8.1f} req/s   p50 {s[k]['p50_ms']:6.2f} ms"
                f"   p99 {s[k]['p99_ms']:7.2f} ms"
            )
    err(f"  4xx {res['errors_4xx']}  5xx {res['errors_5xx']}")
    worst = {k: min(res["depths"], key=lambda d: d["ratios"][k]) for k in BASELINE}
    fill_p99 = round(res["fill"]["get"]["p99_ms"], 2) if res["fill"] else None
    print(
        json.dumps(
            {
                "benchmark": "api",
                "post_rps": round(worst["post"]["summary"]["post"]["rps"], 1),
                "get_rps": round(worst["get"]["summary"]["get"]["rps"], 1),
                "noop_rps": round(worst["get"]["summary"]["noop"]["rps"], 1),
                "post_ratio": round(worst["post"]["ratios"]["post"], 3),
                "get_ratio": round(worst["get"]["ratios"]["get"], 3),
                "errors_5xx": res["errors_5xx"],
                "get_p99_during_fill_ms": fill_p99,
                "noop_post_rps": round(worst["post"]["summary"]["noop_post"]["rps"], 1),
                "depths": {
                    str(d["depth"]): {
                        "post_ratio": round(d["ratios"]["post"], 3),
                        "get_ratio": round(d["ratios"]["get"], 3),
                        **{
                            f"{k}_{m}": round(d["summary"][k][m], 2)
                            for k in KINDS
                            for m in ("rps", "p50_ms", "p99_ms")
                        },
                    }
                    for d in res["depths"]
                },
                "load_tool": res["tool"],
            }
        )
    )


if __name__ == "__main__":
    main()
