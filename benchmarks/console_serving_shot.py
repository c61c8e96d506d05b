"""Screenshots of the console's serving view (``docs/console/serving*.png``).

Orion's real API app on a fake Ray, with serving in-process: a manager without Serve and the real
replica code of the ``test`` engine (``tests/unit/serving_fakes.py``). Three models — a shared one
under a canary with injected errors and latency, a tenant's A/B test, a tenant's single version —
some traffic, then Playwright on Debian's Chromium signs in as the admin and as a tenant.

    python -m benchmarks.console_serving_shot [OUTDIR]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading

import httpx

from benchmarks.console_demo import ADMIN_KEY, TENANT_KEYS, TENANTS, _free_port, gpu_node, populate_serving
from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import SchedulerConfig
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.serving.router import ModelRouter
from orion_ray.store import SQLiteStore
from tests.unit.serving_fakes import LocalServing

CHROMIUM = "/usr/bin/chromium"


def serve(serving: LocalServing, port: int) -> None:
    """The API on ``port`` in a background thread; returns once it answers."""
    import uvicorn

    path = tempfile.mkdtemp(prefix="orion-serving-shot-") + "/orion.db"
    started = threading.Event()

    async def main() -> None:
        sched = Scheduler(
            SQLiteStore(path), runtime=FakeRuntime([gpu_node(i) for i in range(4)]), config=SchedulerConfig()
        )
        keys = {hash_key(k): t for t, k in TENANT_KEYS.items()}
        await sched.configure_tenants(TENANTS, keys, [hash_key(ADMIN_KEY)], "demo")
        asyncio.get_running_loop().create_task(sched.start())
        access = StoreAccess(path, max_queue_size=10_000)
        app = build_app(KeyRing([hash_key(ADMIN_KEY)], keys), backend=sched, access=access)
        app.state.serving = serving.client
        app.state.model_router = ModelRouter(
            serving.client, serving.handle_of, table_ttl_s=0, report_every_s=0
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        started.set()
        await task

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    started.wait(60)


def main() -> None:
    from playwright.sync_api import sync_playwright

    out = sys.argv[1] if len(sys.argv) > 1 else "docs/console"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serving = LocalServing()
    serve(serving, port)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as c:
        populate_serving(c, serving)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for name, key in (
            ("serving", ADMIN_KEY),
            ("serving-tenant", TENANT_KEYS["research"]),
        ):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(url + "/console")
            page.fill("#key", key)
            page.click("#signin")
            page.wait_for_selector('[data-testid="who"]')
            page.goto(url + "/console#/serving")
            page.reload()
            page.wait_for_selector('body[data-ready="serving"]', state="attached")
            page.screenshot(path=f"{out}/{name}.png", full_page=True)
            print(f"{out}/{name}.png")
            ctx.close()
        browser.close()


if __name__ == "__main__":
    main()
