"""A populated Orion API in one process, for the console's page-load benchmark and screenshots.

Orion's real API app and scheduler over the real SQLite store, on a fake Ray (``FakeRuntime``):
``--nodes`` GPU nodes (8 A100s each, in two pools), three tenants with quotas and weights, and
``--workloads`` workloads submitted through the API (GPU tasks of 1–8 GPUs at every priority
class; the scheduler admits what fits, the rest queue). Nothing executes: fake runs stay running.
Served by uvicorn on loopback; ``python -m benchmarks.console_demo`` prints the URL and keys and
serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import SchedulerConfig
from orion_ray.runtime.base import NodeView
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN_KEY = "demo-admin-key"
TENANT_KEYS = {"research": "demo-research-key", "vision": "demo-vision-key", "speech": "demo-speech-key"}
CLASSES_LOW = ["normal", "low", "best_effort"]
TENANTS = [
    {"id": "research", "weight": 2, "quota": {"gpu": 320}, "allowed_priorities": ["high", "normal", "low"]},
    {"id": "vision", "weight": 1, "quota": {"gpu": 240}, "allowed_priorities": ["high", *CLASSES_LOW]},
    {"id": "speech", "weight": 1, "quota": {"gpu": 160}, "allowed_priorities": ["high", *CLASSES_LOW]},
]
CLASSES = ["high", "normal", "normal", "low", "best_effort"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpu_node(i: int) -> NodeView:
    """Node ``i``: 8 A100s and 32 CPUs, in pool ``a100-a`` or ``a100-b``."""
    total = {"CPU": 32.0, "GPU": 8.0, "memory": 256e9}
    labels = {"orion.io/pool": "a100-a" if i % 2 == 0 else "a100-b", "ray.io/accelerator-type": "A100"}
    return NodeView(f"node-{i:03d}", dict(total), dict(total), labels, available=dict(total))


@dataclass
class Demo:
    """A running demo: its URL and keys; ``stop()`` ends it."""

    url: str
    admin_key: str = ADMIN_KEY
    tenant_keys: dict[str, str] = field(default_factory=lambda: dict(TENANT_KEYS))
    loop: Optional[asyncio.AbstractEventLoop] = None
    server: Any = None
    thread: Optional[threading.Thread] = None
    sched: Optional[Scheduler] = None

    def stop(self) -> None:
        """Stop the server and the scheduler, and wait for the thread."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)


async def _populate(sched: Scheduler, n_workloads: int, seed: int) -> None:
    rng = random.Random(seed)
    keys = {hash_key(k): t for t, k in TENANT_KEYS.items()}
    await sched.configure_tenants(TENANTS, keys, [hash_key(ADMIN_KEY)], "demo")
    tenants = list(TENANT_KEYS)
    for i in range(n_workloads):
        gpus = rng.choice([1, 1, 1, 2, 2, 4, 8])
        tenant = rng.choice(tenants)
        priority = rng.choice(CLASSES if tenant != "research" else CLASSES[:4])
        spec = {
            "workload_type": "task",
            "function": "math:factorial",
            "args": [10],
            "priority": priority,
            "resources": {"gpu": gpus, "cpu": 1},
            "metadata": {"labels": {"team": tenant, "n": str(i)}},
        }
        await sched.submit(spec, tenant, tenant)


def populate_serving(c: Any, serving: Any) -> None:
    """Three models through REST (a shared one under a canary with injected errors and latency, a
    tenant's A/B test, a tenant's single version) and some traffic."""

    def deploy(**body) -> None:
        r = c.post("/internal/deployments/create", json={"engine": "test", **body})
        r.raise_for_status()

    deploy(model_id="chat", version="v1", replicas=2, engine_args={"latency_s": 0.02})
    deploy(model_id="chat", version="v2", engine_args={"error_rate": 0.3, "latency_s": 0.04})
    deploy(model_id="summarize", version="v3", tenant_id="research", gpus_per_replica=1)
    deploy(model_id="embed", version="a", tenant_id="vision")
    deploy(model_id="embed", version="b", tenant_id="vision")
    serving.running()
    serving.manager.tick()  # the replicas' statuses, as the manager's loop reads them
    canary = {
        "model_id": "chat",
        "strategy": "canary",
        "stable": "v1",
        "candidate": "v2",
        "steps": [{"weight": 25, "duration": "10m"}, {"weight": 100, "duration": 0}],
        "success_criteria": {"error_rate": 0.5, "latency_p95": "2s", "min_requests": 20},
    }
    c.put("/internal/models/chat/release", json=canary).raise_for_status()
    ab = {
        "model_id": "embed",
        "strategy": "ab",
        "stable": "a",
        "ab": {"header": "X-User", "variants": {"a": 50, "b": 50}},
    }
    c.put("/internal/models/embed/release", json=ab).raise_for_status()
    for i in range(60):
        for model in ("chat", "embed"):
            c.post("/v1/completions", json={"model": model, "prompt": f"p{i}", "max_tokens": 4})


def start_demo(
    *, n_nodes: int = 100, n_workloads: int = 1000, port: int = 0, seed: int = 7, serving: bool = True
) -> Demo:
    """Start the populated API on loopback in a background thread; returns once it answers.
    ``serving``: model serving in-process (the manager without Serve, the ``test`` engine's replica
    code: ``tests/unit/serving_fakes.py``) with three models and releases."""
    import uvicorn

    local = None
    if serving:
        from tests.unit.serving_fakes import LocalServing

        local = LocalServing()

    port = port or _free_port()
    tmp = tempfile.mkdtemp(prefix="orion-console-demo-")
    path = f"{tmp}/orion.db"
    demo = Demo(url=f"http://127.0.0.1:{port}")
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        store = SQLiteStore(path)
        runtime = FakeRuntime([gpu_node(i) for i in range(n_nodes)])
        sched = Scheduler(store, runtime=runtime, config=SchedulerConfig(max_queue_size=100_000))
        demo.sched = sched
        await _populate(sched, n_workloads, seed)
        task = asyncio.get_running_loop().create_task(sched.start())
        keys = KeyRing([hash_key(ADMIN_KEY)], {hash_key(k): t for t, k in TENANT_KEYS.items()})
        access = StoreAccess(path, max_queue_size=100_000)
        app = build_app(keys, backend=sched, access=access)
        if local is not None:
            from orion_ray.serving.router import ModelRouter

            app.state.serving = local.client
            app.state.model_router = ModelRouter(
                local.client, local.handle_of, table_ttl_s=0, report_every_s=0
            )
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        demo.server = uvicorn.Server(config)
        demo.loop = asyncio.get_running_loop()
        serve = asyncio.get_running_loop().create_task(demo.server.serve())
        while not demo.server.started:
            await asyncio.sleep(0.05)
        started.set()
        await serve
        await sched.stop()  # returns once its cycle loop has ended: the store may close
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        access.close()
        store.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller of start_demo
            failure.append(exc)
            started.set()

    demo.thread = threading.Thread(target=run, name="orion-console-demo", daemon=True)
    demo.thread.start()
    started.wait(timeout=300)
    if failure:
        raise RuntimeError(f"the demo did not start: {failure[0]!r}") from failure[0]
    # let the scheduler admit what fits (a few cycles) before anyone measures
    import httpx

    if local is not None:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=demo.url, headers=auth, timeout=30) as c:
            populate_serving(c, local)

    deadline = time.time() + 60
    while time.time() < deadline:
        q = httpx.get(demo.url + "/api/v1/queue", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        if q["total_running"] > 0:
            break
        time.sleep(0.2)
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--port", type=int, default=8010)
    a = ap.parse_args()
    demo = start_demo(n_nodes=a.nodes, n_workloads=a.workloads, port=a.port)
    print(f"console: {demo.url}/console  admin key: {ADMIN_KEY}")
    for t, k in TENANT_KEYS.items():
        print(f"  tenant {t}: {k}")
    try:
        while demo.thread is not None and demo.thread.is_alive():
            time.sleep(1)
    except KeyboardInterrupt:
        demo.stop()


if __name__ == "__main__":
    main()
