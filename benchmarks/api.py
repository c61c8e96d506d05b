"""api: HTTP load on the REST API from a second process on loopback, against a no-op route.

One private `orion up` (fresh ORION_HOME, non-default ports, ``scheduler.max_queue_size`` raised
so no 429 happens), then the ``orion-api`` Serve app is redeployed under the same name with one
extra, benchmark-only route, ``GET /bench/noop`` (the product has no unauthenticated no-op route):
the same FastAPI app, middleware and Serve deployment as ``orion_ray/api/serve_app.py``.

Load comes from another process: ``wrk`` (``apt-get install wrk``) when it is on PATH, else a
Python load generator with keep-alive connections in threads. Three kinds, each run for
``--duration`` seconds with ``--concurrency`` connections, in a rotating order, ``--repeats`` times:

* ``post``: ``POST /api/v1/workloads``, a trivial task asking for a resource no node has
  (``custom: {"bench-never": 1}``), so the scheduler only queues it and nothing runs;
* ``get``: ``GET /api/v1/workloads/{id}`` over workloads submitted before the measurement;
* ``noop``: ``GET /bench/noop``, the baseline.

Figures are medians over repeats: requests/s, p50/p99 latency, ratio to the no-op, 5xx count.
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

from ._common import err, median, pct

APP_NAME = "orion-api"
SPEC = {"workload_type": "task", "function": "benchmarks._tasks:started_at",
        "resources": {"cpu": 0.1, "custom": {"bench-never": 1}}}
KINDS = ("noop", "post", "get")


# -- the Serve app with the benchmark's extra route ------------------------------------------------
def deploy_with_noop(ray_address: str, api_key: str, max_body_bytes: int) -> None:
    """Redeploy ``orion-api`` as ``build_api_app`` does, plus ``GET /bench/noop`` (no auth)."""
    import ray
    from ray import serve

    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.api.serve_app import ActorBackend

    app = build_app(KeyRing([hash_key(api_key)]), None, max_body_bytes,
                    backend_factory=ActorBackend)

    @app.get("/bench/noop", include_in_schema=False)
    async def noop():
        return {"ok": True}

    @serve.deployment(name="OrionAPI", num_replicas=1, max_ongoing_requests=1000,
                      ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class OrionAPI:
        """The product's replica, with the benchmark's route."""

    ray.init(address=ray_address, namespace="orion", log_to_driver=False)
    try:
        serve.run(OrionAPI.bind(), name=APP_NAME, route_prefix="/", blocking=False)
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
  if mode == "post" then
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


def run_wrk(port: int, key: str, mode: str, ids_path: str, seconds: float, conns: int,
            workdir: str) -> dict:
    script = os.path.join(workdir, f"{mode}.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA % {"mode": mode, "ids": ids_path, "key": key, "body": json.dumps(SPEC)})
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{max(1, round(seconds))}s",
                          "-s", script, f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[len("WRKJSON "):])
    return {"rps": r["requests"] / r["seconds"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "e5": r["e5"], "e4": r["e4"] + r["socket_errors"], "requests": r["requests"]}


def python_worker(port: int, key: str, mode: str, ids_path: str, seconds: float,
                  conns: int) -> dict:
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
                conn.request("POST", "/api/v1/workloads", body,
                             {**auth, "Content-Type": "application/json"})
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
    return {"rps": len(lat) / elapsed, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "e5": sum(k for c, k in codes.items() if c >= 500),
            "e4": sum(k for c, k in codes.items() if 400 <= c < 500), "requests": len(lat)}


def load(tool: str, port: int, key: str, mode: str, ids_path: str, seconds: float, conns: int,
         workdir: str) -> dict:
    """One measured phase, always from another process."""
    if tool == "wrk":
        return run_wrk(port, key, mode, ids_path, seconds, conns, workdir)
    cmd = [sys.executable, "-m", "benchmarks.api", "--worker",
           json.dumps([port, key, mode, ids_path, seconds, conns])]
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


def measure(args, key: str, workdir: str) -> dict:
    import httpx
    tool = "wrk" if shutil.which("wrk") and not args.python_load else "python"
    err(f"load generator: {tool}, {args.concurrency} connections, {args.duration:g}s per phase")
    with httpx.Client(base_url=f"http://127.0.0.1:{args.port}",
                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        ids = [c.post("/api/v1/workloads", json=SPEC).json()["workload_id"]
               for _ in range(args.get_pool)]
    ids_path = os.path.join(workdir, "ids.txt")
    with open(ids_path, "w") as f:
        f.write("\n".join(ids) + "\n")
    for kind in KINDS:  # warm-up, not counted
        load(tool, args.port, key, kind, ids_path, 2, args.concurrency, workdir)
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    for rep in range(args.repeats):
        order = KINDS[rep % 3:] + KINDS[:rep % 3]
        for kind in order:
            r = load(tool, args.port, key, kind, ids_path, args.duration, args.concurrency, workdir)
            runs[kind].append(r)
            err(f"  repeat {rep + 1} {kind:4s}: {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms"
                f"  p99 {r['p99_ms']:7.2f} ms  4xx {r['e4']}  5xx {r['e5']}")
    summary = {k: {m: median([r[m] for r in rs]) for m in ("rps", "p50_ms", "p99_ms")}
               for k, rs in runs.items()}
    with httpx.Client(timeout=30) as c:  # what the scheduler was doing meanwhile
        h = c.get(f"http://127.0.0.1:{args.port}/health").json()
    err(f"scheduler after the run: {h.get('active')} active, {h.get('cycles')} cycles, "
        f"last cycle {json.dumps(h.get('last_cycle'))[:300]}")
    e5 = sum(r["e5"] for rs in runs.values() for r in rs)
    e4 = sum(r["e4"] for rs in runs.values() for r in rs)
    return {"tool": tool, "summary": summary, "errors_5xx": e5, "errors_4xx": e4,
            "queued": args.get_pool + sum(r["requests"] for r in runs["post"])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8200, help="Orion API port")
    p.add_argument("--ray-port", type=int, default=6395)
    p.add_argument("--dashboard-port", type=int, default=8285)
    p.add_argument("--num-cpus", type=float, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per measured phase")
    p.add_argument("--concurrency", type=int, default=8)
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
        info = up(cfg, num_cpus=args.num_cpus, ray_port=args.ray_port,
                  dashboard_port=args.dashboard_port, say=err)
        key = read_credentials()["api_key"]
        deploy_with_noop(info["ray_address"], key, cfg.orion.api.max_body_bytes)
        wait_ok(args.port, "/bench/noop")
        wait_ok(args.port, "/health")
        res = measure(args, key, home)
    finally:
        down(say=err)
        shutil.rmtree(home, ignore_errors=True)

    s = res["summary"]
    err(f"\napi ({res['tool']}, medians of {args.repeats}; {res['queued']} workloads queued):")
    for k in KINDS:
        err(f"  {k:4s} {s[k]['rps']:8.1f} req/s   p50 {s[k]['p50_ms']:6.2f} ms"
            f"   p99 {s[k]['p99_ms']:7.2f} ms")
    err(f"  4xx {res['errors_4xx']}  5xx {res['errors_5xx']}")
    err(json.dumps({"load_tool": res["tool"], "queued": res["queued"], **{
        f"{k}_{m}": round(s[k][m], 2) for k in KINDS for m in ("p50_ms", "p99_ms")}}))
    print(json.dumps({"benchmark": "api", "post_rps": round(s["post"]["rps"], 1),
                      "get_rps": round(s["get"]["rps"], 1), "noop_rps": round(s["noop"]["rps"], 1),
                      "post_ratio": round(s["post"]["rps"] / s["noop"]["rps"], 3),
                      "get_ratio": round(s["get"]["rps"] / s["noop"]["rps"], 3),
                      "errors_5xx": res["errors_5xx"]}))


if __name__ == "__main__":
    main()
