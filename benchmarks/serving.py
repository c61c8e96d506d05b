"""serving: requests to one model through Orion's per-model OpenAI base URL (``/models/<m>/v1``: the
model replica is the first hop) and through the ``/v1`` routes (model in the body, through the API
replica), against the same engine's Serve application called directly, in one run.

A private local Ray (non-default ports) with Serve on loopback: the ``orion-api`` app and the
``orion-serving`` manager, which deploys two versions of each model and applies a canary release
(10 % to the candidate, a step long enough never to move). Baselines, deployed beside them with
the same replica class, engine and options: ``direct`` (the replica's plain HTTP, no key) and
``key`` (the same after a key check through the same key cache). Every path goes through the same
Serve HTTP proxy.

Load comes from a second process (keep-alive connections in threads), phases alternate (the
first path rotates every repeat), and each figure is the median over ``--repeats``, with the
spread (min..max) of the repeats: requests/s and p50/p99 latency per path, the added p50/p99
(path minus direct) and the throughput ratio. Runs: an engine that answers at once (0 ms, the
headline), one that takes 20 ms per request, and a streaming run (time to first token).
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
    ttft: list[float] = []
    stream = bool(body.get("stream"))
    bad = [0]
    codes: dict[int, int] = {}  # the non-200 statuses seen (shared by the threads; += under the GIL)
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, firsts, errors = [], [], 0
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            conn.request("POST", path, data, hdrs)
            r = conn.getresponse()
            if stream:  # time to the first event of the answer
                r.read1(65536)
                firsts.append(time.perf_counter() - t)
            r.read()
            mine.append(time.perf_counter() - t)
            if r.status != 200:
                errors += 1
                codes[r.status] = codes.get(r.status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            ttft.extend(firsts)
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
        "ttft_ms": pct(ttft, 50) * 1e3 if ttft else 0.0,
        "errors": bad[0],
        "statuses": {str(k): v for k, v in codes.items()},
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
PROXY_ENV = {
    "default": {},
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "direct-ingress": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
}


def setup(args) -> None:
    """Ray, Serve, the API app and the manager; ``--proxy`` sets Serve's proxy switches."""
    import ray
    from ray import serve

    from orion_ray.api.auth import hash_key
    from orion_ray.api.serve_app import APP_NAME, build_api_app
    from orion_ray.serving.actor import deploy_manager

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.update(PROXY_ENV[args.proxy])  # the local Ray's processes inherit them
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
    deploy_manager(tick_s=0.5)
    serve.run(build_api_app([hash_key(KEY)], 1_048_576), name=APP_NAME, route_prefix="/")


def deploy_baselines(model: str, engine_args: dict) -> None:
    """The same replica class, engine and options as the model's versions, called over HTTP
    without Orion's gate: plainly (``direct``) and after a key check (``key``)."""
    from ray import serve

    from orion_ray.serving.deployer import serve_options
    from orion_ray.serving_specs import DeploymentSpec
    from serve_apps.llm.replica import build_replica_app

    spec = DeploymentSpec(
        model_id=model, version="base", engine="test", engine_args=engine_args, max_ongoing_requests=64
    )
    for mode in ("direct", "key"):
        bound = build_replica_app("test", engine_args, model, "base", options=serve_options(spec), http=mode)
        serve.run(bound, name=f"{mode}-{model}", route_prefix=f"/{mode}/{model}")


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


def deploy_model(client, model: str, engine_args: dict, wait_s: float) -> None:
    """Two versions of ``model`` (the test engine) and a canary release holding 10 % on v2."""
    for version in ("v1", "v2"):
        r = client.post(
            "/internal/deployments/create",
            json={
                "model_id": model,
                "version": version,
                "engine": "test",
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
    deadline = time.time() + 60
    while client.get(f"/models/{model}/v1/models").status_code != 200:  # the base URL's route
        if time.time() > deadline:
            raise RuntimeError(f"/models/{model}/v1 not served within 60s")
        time.sleep(0.5)


PATHS = ("direct", "key", "model_url", "v1")


def measure(args, model: str, body: dict, seconds: float, conns: int, paths=PATHS) -> dict:
    """Alternating phases over ``paths``; medians (and the spread) over repeats."""
    auth = {"Authorization": f"Bearer {KEY}"}
    table = {
        "direct": (f"/direct/{model}/v1/completions", {}),
        "key": (f"/key/{model}/v1/completions", auth),
        "model_url": (f"/models/{model}/v1/completions", auth),
        "v1": ("/v1/completions", auth),
    }
    chosen = {k: table[k] for k in paths}
    for path, headers in chosen.values():  # warm-up, not counted
        load(args.port, path, {**body, "model": model}, headers, 2, conns)
    runs: dict[str, list[dict]] = {k: [] for k in chosen}
    names = list(chosen)
    for rep in range(args.repeats):
        k = rep % len(names)
        for name in names[k:] + names[:k]:  # rotate which path runs first
            path, headers = chosen[name]
            r = load(args.port, path, {**body, "model": model}, headers, seconds, conns)
            runs[name].append(r)
            err(
                f"  {model} repeat {rep + 1} {name:9s}: {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms"
                f"  p99 {r['p99_ms']:8.2f} ms  ttft {r['ttft_ms']:6.2f} ms"
                f"  errors {r['errors']} {r['statuses'] or ''}"
            )
    metrics = ("rps", "p50_ms", "p99_ms", "ttft_ms")
    s = {k: {m: median([r[m] for r in rs]) for m in metrics} for k, rs in runs.items()}
    spread = {
        k: {m: [round(min(r[m] for r in rs), 2), round(max(r[m] for r in rs), 2)] for m in metrics}
        for k, rs in runs.items()
    }
    out = {"summary": s, "spread": spread, "errors": sum(r["errors"] for rs in runs.values() for r in rs)}
    for name in chosen:
        if name == "direct":
            continue
        out[name] = {
            "added_p50_ms": s[name]["p50_ms"] - s["direct"]["p50_ms"],
            "added_p99_ms": s[name]["p99_ms"] - s["direct"]["p99_ms"],
            "throughput_ratio": s[name]["rps"] / s["direct"]["rps"],
            "ttft_added_ms": s[name]["ttft_ms"] - s["direct"]["ttft_ms"],
        }
    return out


def report(name: str, res: dict) -> None:
    s, sp = res["summary"], res["spread"]
    err(f"\n{name}: medians of the repeats (spread min..max)")
    for k in s:
        err(
            f"  {k:9s} {s[k]['rps']:8.1f} req/s ({sp[k]['rps'][0]:.0f}..{sp[k]['rps'][1]:.0f})"
            f"   p50 {s[k]['p50_ms']:7.2f} ms ({sp[k]['p50_ms'][0]:.2f}..{sp[k]['p50_ms'][1]:.2f})"
            f"   p99 {s[k]['p99_ms']:8.2f} ms   ttft {s[k]['ttft_ms']:6.2f} ms"
        )
    for k in s:
        if k in res:
            a = res[k]
            err(
                f"  {k:9s} vs direct: added p50 {a['added_p50_ms']:.2f} ms, added p99 "
                f"{a['added_p99_ms']:.2f} ms, throughput ratio {a['throughput_ratio']:.3f}, "
                f"ttft added {a['ttft_added_ms']:.2f} ms"
            )
    err(f"  non-200 answers {res['errors']}")


def rounded(d: dict) -> dict:
    return {k: round(v, 3) for k, v in d.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8300, help="Serve HTTP port")
    p.add_argument("--num-cpus", type=float, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--proxy", choices=sorted(PROXY_ENV), default="default", help="Serve's proxy switches")
    p.add_argument("--no-slow", action="store_true", help="skip the 20 ms engine")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return

    import httpx
    import ray
    from ray import serve

    setup(args)
    out: dict = {"proxy": args.proxy}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{args.port}", timeout=120, headers={"Authorization": f"Bearer {KEY}"}
        ) as c:
            deploy_model(c, "bench", {}, 120)
            deploy_baselines("bench", {})
            body = {"prompt": "hello world", "max_tokens": 8}
            fast = measure(args, "bench", body, args.duration, args.concurrency)
            report("engine 0 ms", fast)
            out["key_baseline"] = rounded(fast["key"])
            out["spread"] = fast["spread"]
            if not args.no_stream:
                stream = measure(
                    args,
                    "bench",
                    {**body, "max_tokens": 16, "stream": True},
                    args.duration,
                    args.concurrency,
                    ("direct", "model_url", "v1"),
                )
                report("streaming, engine 0 ms", stream)
                out["ttft_added_ms"] = round(stream["model_url"]["ttft_added_ms"], 3)
                out["v1_ttft_added_ms"] = round(stream["v1"]["ttft_added_ms"], 3)
                out["stream"] = {k: rounded(stream[k]) for k in ("model_url", "v1")}
            if not args.no_slow:
                deploy_model(c, "bench20", {"latency_s": 0.02}, 120)
                deploy_baselines("bench20", {"latency_s": 0.02})
                slow = measure(args, "bench20", body, args.duration, args.concurrency)
                report("engine 20 ms", slow)
                out["engine_20ms"] = {k: rounded(slow[k]) for k in ("key", "model_url", "v1")}
    finally:
        serve.shutdown()
        ray.shutdown()
    cost = policy_cost_us()
    err(f"router policy per request, in process: {cost:.1f} µs")
    m, v1 = fast["model_url"], fast["v1"]
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "added_p50_ms": round(m["added_p50_ms"], 3),
                "added_p99_ms": round(m["added_p99_ms"], 3),
                "throughput_ratio": round(m["throughput_ratio"], 3),
                "ttft_added_ms": out.pop("ttft_added_ms", None),
                "v1_added_p50_ms": round(v1["added_p50_ms"], 3),
                "v1_added_p99_ms": round(v1["added_p99_ms"], 3),
                "v1_throughput_ratio": round(v1["throughput_ratio"], 3),
                "policy_us_per_request": round(cost, 1),
                **out,
            }
        )
    )


if __name__ == "__main__":
    main()
