"""serving: requests through Orion's router (a canary split active) against the same deployment
called directly through Serve, in one run.

A private local Ray (non-default ports) with Serve on loopback: the ``orion-api`` app (the router
lives in its ingress) and the ``orion-serving`` manager, which deploys two versions of one model
and applies a canary release (10 % to the candidate, a step long enough never to move). The
manager also exposes each version's Serve application over HTTP (``/direct/<deployment>``, a
benchmark-only switch): that is the baseline, the same replicas without Orion's auth, policy and
router in front. Both paths go through the same Serve HTTP proxy.

Load comes from a second process (keep-alive connections in threads), phases alternate, and each
figure is the median over ``--repeats``: requests/s and p50/p99 latency per path, then the added
p50/p99 (Orion minus direct) and the throughput ratio. First with the deterministic test engine
(the headline), then with the CPU model (SmolLM2-135M) when it is installed, reported beside it.
The last line of stdout is one JSON object (see ../shared/BENCHMARKS.md).
"""

# no ``from __future__ import annotations``: FastAPI must see the ingress's real ``Request``
# annotation after Serve pickles the class into its replica
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

from ._common import err, median, pct

KEY = "bench-serving-admin-key"


# -- the load-generating process --------------------------------------------------------------------
def worker(port: int, path: str, body: dict, headers: dict, seconds: float, conns: int) -> dict:
    """POST ``body`` to ``path`` on ``conns`` keep-alive connections for ``seconds``."""
    data = json.dumps(body)
    hdrs = {**headers, "Content-Type": "application/json"}
    lat: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, errors = [], 0
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            conn.request("POST", path, data, hdrs)
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            errors += r.status != 200
        conn.close()
        with lock:
            lat.extend(mine)
            bad[0] += errors

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "errors": bad[0],
        "requests": len(lat),
    }


def load(port: int, path: str, body: dict, headers: dict, seconds: float, conns: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.serving",
        "--worker",
        json.dumps([port, path, body, headers, seconds, conns]),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load worker failed: {out.stderr[-1000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the cluster side ---------------------------------------------------------------------------------
def setup(args) -> None:
    """Ray, Serve, the API app and the manager (exposing versions directly, for the baseline)."""
    import ray
    from ray import serve

    from orion_ray.api.auth import hash_key
    from orion_ray.api.serve_app import APP_NAME, build_api_app
    from orion_ray.serving.actor import deploy_manager

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # "local": always a private Ray of this run, never someone else's running cluster
    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        namespace="orion",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    deploy_manager(tick_s=0.5, direct_prefix="/direct")
    serve.run(build_api_app([hash_key(KEY)], 1_048_576), name=APP_NAME, route_prefix="/")


def deploy_plain_ingress(model: str) -> None:
    """A second baseline: a plain Serve FastAPI ingress that forwards to the same version through
    a handle (the hop count of Orion's path, without its keys, policy, breaker and cache)."""
    from fastapi import FastAPI, Request
    from ray import serve

    from orion_ray.serving.manager import app_name
    from serve_apps.llm.replica import DEPLOYMENT_NAME

    app = FastAPI()
    target = app_name(f"{model}--v1")

    @serve.deployment(name="PlainIngress", max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class PlainIngress:
        def __init__(self):
            self.handle = serve.get_deployment_handle(DEPLOYMENT_NAME, target)

        @app.post("/v1/completions")
        async def completions(self, request: Request):
            return await self.handle.complete.remote("completion", await request.json())

    serve.run(PlainIngress.bind(), name=f"plain-{model}", route_prefix=f"/plain/{model}")


def policy_cost_us(n: int = 20_000) -> float:
    """Microseconds per routing decision of the router's policy (pick + breaker + cache key), in
    process: the part of Orion's path that is its own logic rather than a Serve hop."""
    import asyncio

    from orion_ray.serving.cache import request_key
    from orion_ray.serving.router import ModelRouter

    spec = {
        "model_id": "m",
        "strategy": "canary",
        "stable": "v1",
        "candidate": "v2",
        "steps": [{"weight": 10, "duration": "24h"}],
    }
    entry = {
        "tenant_id": None,
        "versions": {"v1": "a1", "v2": "a2"},
        "weights": {"v1": 90.0, "v2": 10.0},
        "release": spec,
    }
    router = ModelRouter(None, lambda app: None)
    body = {"model": "m", "prompt": "hello world", "max_tokens": 8}

    async def loop():
        t = time.perf_counter()
        for _ in range(n):
            v = router.choose("m", entry, {})
            request_key("m", v, body)
            router.breakers[("m", v)] = router._breaker("m", v).record(True, 0.0)
        return (time.perf_counter() - t) / n * 1e6

    return asyncio.run(loop())


def deploy_model(client, model: str, engine: str, engine_args: dict, wait_s: float) -> None:
    """Two versions of ``model`` and a canary release holding 10 % on the candidate."""
    for version in ("v1", "v2"):
        r = client.post(
            "/internal/deployments/create",
            json={
                "model_id": model,
                "version": version,
                "engine": engine,
                "engine_args": engine_args,
                "max_ongoing_requests": 64,
            },
        )
        r.raise_for_status()
    deadline = time.time() + wait_s
    while time.time() < deadline:
        states = [
            client.get(f"/internal/deployments/{model}--{v}/status").json()["status"] for v in ("v1", "v2")
        ]
        if states == ["healthy", "healthy"]:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"{model} not healthy within {wait_s:g}s")
    client.put(
        f"/internal/models/{model}/release",
        json={
            "model_id": model,
            "strategy": "canary",
            "stable": "v1",
            "candidate": "v2",
            "steps": [{"weight": 10, "duration": "24h"}, {"weight": 100, "duration": 0}],
            "success_criteria": {"error_rate": 1.0, "min_requests": 1},
        },
    ).raise_for_status()


def measure(args, model: str, body: dict, seconds: float, conns: int) -> dict:
    """Alternating phases, direct and through Orion; medians over repeats."""
    paths = {
        "direct": (f"/direct/{model}--v1/v1/completions", {}),
        "plain": (f"/plain/{model}/v1/completions", {}),
        "orion": ("/v1/completions", {"Authorization": f"Bearer {KEY}"}),
    }
    for path, headers in paths.values():  # warm-up, not counted
        load(args.port, path, {**body, "model": model}, headers, 2, conns)
    runs: dict[str, list[dict]] = {k: [] for k in paths}
    for rep in range(args.repeats):
        names = list(paths)
        for name in names[rep % 3 :] + names[: rep % 3]:  # rotate which path runs first
            path, headers = paths[name]
            r = load(args.port, path, {**body, "model": model}, headers, seconds, conns)
            runs[name].append(r)
            err(
                f"  {model} repeat {rep + 1} {name:6s}: {r['rps']:8.1f} req/s  "
                f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms  errors {r['errors']}"
            )
    s = {k: {m: median([r[m] for r in rs]) for m in ("rps", "p50_ms", "p99_ms")} for k, rs in runs.items()}
    return {
        "summary": s,
        "errors": sum(r["errors"] for rs in runs.values() for r in rs),
        "added_p50_ms": s["orion"]["p50_ms"] - s["direct"]["p50_ms"],
        "added_p99_ms": s["orion"]["p99_ms"] - s["direct"]["p99_ms"],
        "throughput_ratio": s["orion"]["rps"] / s["direct"]["rps"],
        "vs_plain_added_p50_ms": s["orion"]["p50_ms"] - s["plain"]["p50_ms"],
        "vs_plain_throughput_ratio": s["orion"]["rps"] / s["plain"]["rps"],
    }


def report(name: str, res: dict) -> None:
    s = res["summary"]
    err(f"\n{name}: medians of the repeats")
    for k in ("direct", "plain", "orion"):
        err(
            f"  {k:6s} {s[k]['rps']:8.1f} req/s   p50 {s[k]['p50_ms']:7.2f} ms   p99 {s[k]['p99_ms']:8.2f} ms"
        )
    err(
        f"  added p50 {res['added_p50_ms']:.2f} ms, added p99 {res['added_p99_ms']:.2f} ms, "
        f"throughput ratio {res['throughput_ratio']:.3f}, non-200 answers {res['errors']}"
    )
    err(
        f"  against a plain Serve ingress (same hops): added p50 "
        f"{res['vs_plain_added_p50_ms']:.2f} ms, throughput ratio "
        f"{res['vs_plain_throughput_ratio']:.3f}"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8300, help="Serve HTTP port")
    p.add_argument("--num-cpus", type=float, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per phase (test engine)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--cpu-duration", type=float, default=8.0, help="seconds per phase (CPU model)")
    p.add_argument("--cpu-concurrency", type=int, default=2)
    p.add_argument("--no-cpu-model", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return

    import httpx
    import ray
    from ray import serve

    from serve_apps.llm.engines.cpu import cpu_engine_available

    setup(args)
    out: dict = {}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{args.port}", timeout=120, headers={"Authorization": f"Bearer {KEY}"}
        ) as c:
            deploy_model(c, "bench", "test", {}, 120)
            deploy_plain_ingress("bench")
            test = measure(
                args, "bench", {"prompt": "hello world", "max_tokens": 8}, args.duration, args.concurrency
            )
            report("test engine", test)
            why = "skipped (--no-cpu-model)" if args.no_cpu_model else cpu_engine_available()
            if why is None:
                deploy_model(c, "bench-cpu", "cpu", {"n_ctx": 512}, 300)
                deploy_plain_ingress("bench-cpu")
                cpu = measure(
                    args,
                    "bench-cpu",
                    {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0.7},
                    args.cpu_duration,
                    args.cpu_concurrency,
                )
                report("CPU model (SmolLM2-135M)", cpu)
                out["cpu_model"] = {
                    k: round(cpu[k], 3)
                    for k in (
                        "added_p50_ms",
                        "added_p99_ms",
                        "throughput_ratio",
                        "vs_plain_added_p50_ms",
                        "vs_plain_throughput_ratio",
                    )
                }
            else:
                err(f"CPU model not measured: {why}")
    finally:
        serve.shutdown()
        ray.shutdown()
    cost = policy_cost_us()
    err(f"router policy per request, in process: {cost:.1f} µs")
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "added_p50_ms": round(test["added_p50_ms"], 3),
                "added_p99_ms": round(test["added_p99_ms"], 3),
                "throughput_ratio": round(test["throughput_ratio"], 3),
                "vs_plain_added_p50_ms": round(test["vs_plain_added_p50_ms"], 3),
                "vs_plain_throughput_ratio": round(test["vs_plain_throughput_ratio"], 3),
                "policy_us_per_request": round(cost, 1),
                **out,
            }
        )
    )


if __name__ == "__main__":
    main()
