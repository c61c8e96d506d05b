"""The GPUs view in a real browser: one row per node REST lists, as many GPU cells as the node
has GPUs, the free counts REST gives; a cordon shows and the page's button lifts it; a tenant
has no GPUs view and calls no admin route trying."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

NODES = "/admin/v1/infrastructure/nodes?include_ended=false"


def rows_of(page) -> dict[str, dict]:
    out = {}
    for r in page.query_selector_all('[data-testid="node-row"]'):
        out[r.get_attribute("data-node")] = {
            "cells": len(r.query_selector_all('[data-testid="gpu-cell"]')),
            "free": float(r.query_selector('[data-testid="free-gpus"]').inner_text().replace(",", "")),
            "cordoned": r.get_attribute("data-cordoned") == "true",
        }
    return out


def test_the_grid_matches_rest(console, live):
    c = console("admin")
    for _ in range(3):  # the page and REST read a moment apart: agree on one of a few looks
        page = c.open("gpus", "gpus")
        rows = rows_of(page)
        rest = live.rest("admin", NODES)["items"]
        free = {n["node_id"]: float((n["free"] or {}).get("GPU", 0)) for n in rest}
        if {k: v["free"] for k, v in rows.items()} == pytest.approx(free, abs=0.01):
            break
    assert list(rows) == [n["node_id"] for n in rest]
    assert sum(round(n["resources"].get("GPU", 0)) for n in rest) >= 2  # the fixture's 2 fake GPUs
    for n in rest:
        assert rows[n["node_id"]]["cells"] == round(n["resources"].get("GPU", 0)), n["node_id"]
        assert rows[n["node_id"]]["free"] == pytest.approx(free[n["node_id"]], abs=0.01)
    assert page.inner_text('[data-testid="node-count"]') == str(len(rest))
    assert page.query_selector('[data-testid="legend"]')
    assert page.query_selector_all('[data-testid="pool-row"]')


def test_a_cordoned_node_is_marked_and_the_button_lifts_it(console, live):
    node = next(n for n in live.rest("admin", NODES)["items"] if n["resources"].get("GPU"))["node_id"]
    with live.client("admin") as a:
        r = a.post(f"/admin/v1/infrastructure/nodes/{node}/cordon", json={"reason": "console test <b>x</b>"})
        assert r.status_code == 200, r.text
        try:
            page = console("admin").open("gpus", "gpus")
            row = f'[data-testid="node-row"][data-node="{node}"]'
            assert page.get_attribute(row, "data-cordoned") == "true"
            assert "cordoned" in page.inner_text(f'{row} [data-testid="node-state"]')
            assert "console test <b>x</b>" in page.inner_text(row)  # the reason is text
            page.click(f'{row} [data-testid="uncordon"]')
            page.wait_for_selector(f'{row}[data-cordoned="false"]', timeout=30_000)
            after = next(n for n in live.rest("admin", NODES)["items"] if n["node_id"] == node)
            assert after["cordoned"] is False
        finally:
            a.post(f"/admin/v1/infrastructure/nodes/{node}/uncordon")


def test_a_tenant_has_no_gpus_view_and_calls_no_admin_route(console, live):
    c = console("alice")
    page = c.page
    assert page.query_selector('#nav a[data-view="queue"]')
    assert page.query_selector('#nav a[data-view="gpus"]') is None
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto("about:blank")
    page.goto(f"{live.url}/console#/gpus")
    page.wait_for_selector('.view[data-view="gpus"] .error', timeout=30_000)
    assert "needs the admin key" in page.inner_text("main")
    assert not [u for u in asked if "/admin/" in u or "/internal/" in u]
