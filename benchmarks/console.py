"""console: page load of each console view with 1,000 workloads and 100 nodes, in headless Chromium.

The populated API of ``console_demo`` (Orion's API app and scheduler over the real SQLite store,
100 fake nodes × 8 GPUs, 1,000 workloads of three tenants) on loopback; Debian's Chromium through
Playwright, signed in as the admin (who sees everything: the largest pages). Each view is loaded
``--repeats`` times as a full page load (``about:blank`` first), and timed from the navigation's
start to the moment the view has rendered its data (``performance.now()`` when the view calls
``ready``), read from the page.

Baseline in the same run: the same REST answers the view needs, fetched from Python over a
keep-alive connection (the data's own cost; the view's figure adds the page, the scripts, the
rendering). Figures are medians (and p95) in ms and the ratio of each view to its data.
The last line of stdout is one JSON object (see ../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import httpx

from ._common import err, median, pct
from .console_demo import ADMIN_KEY, start_demo

TARGET_MS = 300.0

# the REST calls each view makes on load ({wid}: a running workload's id)
DATA = {
    "queue": ["/api/v1/queue", "/api/v1/workloads?limit=200"],
    "workload": [
        "/api/v1/workloads/{wid}",
        "/api/v1/workloads/{wid}/explain",
        "/api/v1/workloads/{wid}/logs",
    ],
    "gpus": [
        "/admin/v1/infrastructure/nodes?include_ended=false",
        "/admin/v1/infrastructure/fragmentation",
        "/admin/v1/infrastructure/health",
        "/admin/v1/scaling/events?limit=15",
    ],
    "serving": [
        "/internal/deployments",
        "/internal/releases",
        "/internal/events?limit=30",
        "/internal/serving/gpus",
    ],
}
ROUTES = {"queue": "queue", "workload": "w/{wid}", "gpus": "gpus", "serving": "serving"}


def chromium_path() -> str:
    return os.environ.get("ORION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def data_ms(client: httpx.Client, paths: list[str]) -> float:
    """The view's REST answers, one after another, as the baseline."""
    t0 = time.perf_counter()
    for p in paths:
        client.get(p).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--views", default="queue,workload,gpus,serving")
    ap.add_argument("--screenshots", default=None, help="save a PNG of each view in this directory")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    demo = start_demo(n_nodes=a.nodes, n_workloads=a.workloads)
    err(f"demo API at {demo.url}: {a.nodes} nodes, {a.workloads} workloads")
    out: dict = {"benchmark": "console", "nodes": a.nodes, "workloads": a.workloads, "views": {}}
    try:
        client = httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
        running = client.get("/api/v1/workloads", params={"status": "running", "limit": 1}).json()
        wid = running["items"][0]["workload_id"]
        with sync_playwright() as pw:
            flags = ["--no-sandbox", "--disable-gpu"]
            browser = pw.chromium.launch(executable_path=chromium_path(), args=flags)
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{demo.url}/console")
            page.fill("#key", ADMIN_KEY)
            page.click("#signin")
            page.wait_for_selector('[data-testid="who"]')
            for view in a.views.split(","):
                paths = [p.format(wid=wid) for p in DATA[view]]
                route = ROUTES[view].format(wid=wid)
                loads, data = [], []
                for i in range(a.repeats + 1):  # the first load warms caches: not counted
                    page.goto("about:blank")
                    page.goto(f"{demo.url}/console#/{route}")
                    page.wait_for_selector(f'body[data-ready="{view}"]', state="attached", timeout=60_000)
                    ms = page.evaluate(f"window.__orionReady && window.__orionReady[{json.dumps(view)}]")
                    if i:
                        loads.append(float(ms))
                        data.append(data_ms(client, paths))
                row = {
                    "load_ms_median": round(median(loads), 1),
                    "load_ms_p95": round(pct(loads, 95), 1),
                    "data_ms_median": round(median(data), 1),
                    "ratio_to_data": round(median(loads) / max(median(data), 1e-3), 2),
                    "target_met": median(loads) <= TARGET_MS,
                }
                out["views"][view] = row
                err(f"{view}: {row}")
                if a.screenshots:
                    os.makedirs(a.screenshots, exist_ok=True)
                    page.screenshot(path=os.path.join(a.screenshots, f"{view}.png"), full_page=False)
            browser.close()
        client.close()
    finally:
        demo.stop()
    out["worst_median_ms"] = max(v["load_ms_median"] for v in out["views"].values())
    out["target_ms"] = TARGET_MS
    out["target_met"] = all(v["target_met"] for v in out["views"].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
