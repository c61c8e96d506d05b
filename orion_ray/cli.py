"""The ``orion`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import OrionError


def _print(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, dict):
        width = max((len(k) for k in obj), default=0)
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str)
            print(f"{k:<{width}}  {v}")
    else:
        print(obj)


def _client():
    from .client import OrionClient

    return OrionClient()


def cmd_up(a) -> int:
    from .cluster import up
    from .config import load_config

    cfg = load_config(a.config)
    if a.port is not None:
        cfg.orion.api.port = a.port
    resources = json.loads(a.resources) if a.resources else None
    if resources is not None and not isinstance(resources, dict):
        raise SystemExit("--resources must be a JSON object, e.g. '{\"accel\": 2}'")
    path = a.config or ("orion.yaml" if Path("orion.yaml").exists() else None)
    info = up(
        cfg,
        address=a.address,
        num_cpus=a.num_cpus,
        num_gpus=a.num_gpus,
        resources=resources,
        ray_port=a.ray_port,
        dashboard_port=a.dashboard_port,
        config_path=path,
    )
    if a.output == "json":
        _print(info, "json")
    else:
        print(
            f"Orion is up.\n  API:        {info['api_url']}  (OpenAPI: {info['api_url']}/docs)\n"
            f"  console:    {info['api_url']}/console  (sign in with the admin key)\n"
            f"  dashboard:  {info['dashboard_url']}\n  admin key:  {info['credentials']}\n"
            f"  Ray:        {info['ray_address']}"
            + (f"\n  Ray auth:   {info['ray_auth']}" if info.get("ray_auth") else "")
        )
    if a.control_plane or cfg.orion.region is not None:
        from .control_plane.join import join_from_cli

        print(join_from_cli(a, cfg, info))
    if a.demo:
        from .serving.cli import deploy_demo

        deploy_demo(info["api_url"])
    return 0


def cmd_down(a) -> int:
    from .cluster import down
    from .control_plane.agent_process import stop as stop_region_agent

    stop_region_agent()
    down()
    return 0


def _load_spec(path: str) -> dict:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise SystemExit(f"{path}: expected a mapping (a workload spec)")
    return spec


def cmd_submit(a) -> int:
    c = _client()
    handle = c.submit_workload(_load_spec(a.file))
    if not a.wait:
        _print(handle.ack, a.output)
        return 0
    result = _wait_with_progress(c, handle.workload_id, a.timeout)
    _print(result, a.output)
    return 0 if result["status"] == "completed" else 1


def _wait_with_progress(c, workload_id: str, timeout: Optional[float]) -> dict:
    """Poll until terminal, printing each status change to stderr (stdout stays parseable)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    start = time.monotonic()
    while True:
        w = c.get_workload(workload_id)
        if w["status"] != last:
            last = w["status"]
            print(
                f"[{time.monotonic() - start:6.1f}s] {workload_id} {last}"
                + (f" (attempt {w['attempt']})" if w.get("attempt", 1) > 1 else ""),
                file=sys.stderr,
                flush=True,
            )
        if last in ("completed", "failed", "cancelled"):
            return w
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"workload {workload_id} still {last} after {timeout:g}s")
        time.sleep(0.2)


def cmd_status(a) -> int:
    _print(_client().get_workload(a.id), a.output)
    return 0


def cmd_list(a) -> int:
    page = _client().list_workloads(status=a.status, tenant_id=a.tenant, limit=a.limit, cursor=a.cursor)
    if a.output == "json":
        _print(page, "json")
        return 0
    print(f"{'ID':<20} {'TYPE':<5} {'STATUS':<10} {'PRIORITY':<11} {'TENANT':<12} SUBMITTED")
    for w in page["items"]:
        print(
            f"{w['workload_id']:<20} {w['workload_type']:<5} {w['status']:<10} "
            f"{w['priority']:<11} {w['tenant_id']:<12} {w['submitted_at']}"
        )
    if page.get("next_cursor") is not None:
        print(f"(more: --cursor {page['next_cursor']})")
    return 0


def cmd_cancel(a) -> int:
    _print(_client().cancel(a.id), a.output)
    return 0


def cmd_logs(a) -> int:
    c = _client()
    printed = 0
    while True:
        text = c.logs(a.id)
        sys.stdout.write(text[printed:])
        sys.stdout.flush()
        printed = len(text)
        if not a.follow or c.get_workload(a.id)["status"] in ("completed", "failed", "cancelled"):
            if a.follow:  # the final logs are stored at the end: print what was not seen yet
                text = c.logs(a.id)
                sys.stdout.write(text[printed:])
            return 0
        time.sleep(1.0)


def cmd_explain(a) -> int:
    e = _client().explain(a.id)
    if a.output == "json":
        _print(e, "json")
        return 0
    pos = e["position"]
    print(f"{e['workload_id']}  {e['status']}  attempt {e['attempt']}")
    if pos.get("overall"):
        print(f"position: {pos['overall']} overall, {pos['tenant']} in its tenant")
    for r in e["reasons"]:
        print(f"- {r['code']}: {r['message']}")
    return 0


def cmd_queue(a) -> int:
    q = _client().queue()
    if a.output == "json":
        _print(q, "json")
        return 0
    print(f"{'TENANT':<16} {'QUEUED':>6} {'RUNNING':>7}  USAGE / QUOTA")
    for t in q["tenants"]:
        usage = (
            ", ".join(
                f"{k}={v:g}" + (f"/{t['quota'][k]:g}" if k in t["quota"] else "")
                for k, v in sorted(t["usage"].items())
            )
            or "-"
        )
        print(f"{t['tenant_id']:<16} {t['queued']:>6} {t['running']:>7}  {usage}")
    return 0


def cmd_tenants(a) -> int:
    t = _client().tenants()
    if a.output == "json":
        _print(t, "json")
        return 0
    print(f"{'TENANT':<16} {'WEIGHT':>6} {'KEYS':>4} {'QUEUED':>6} {'RUNNING':>7}  QUOTA")
    for row in t["items"]:
        quota = ", ".join(f"{k}={v:g}" for k, v in sorted(row["quota"].items())) or "-"
        print(
            f"{row['tenant_id']:<16} {row['weight']:>6g} {row['keys']:>4} {row['queued']:>6} "
            f"{row['running']:>7}  {quota}"
        )
    return 0


def cmd_reload(a) -> int:
    """Validate orion.yaml here first; an invalid file changes nothing."""
    from .cluster import config_path_in_use
    from .config import load_config, tenant_key_hashes

    path = a.config or config_path_in_use()
    cfg = load_config(path)
    tenants = cfg.orion.tenants
    result = _client().reload(
        [t.model_dump(mode="json") for t in tenants],
        tenant_key_hashes(tenants),
        cfg.orion.policy.model_dump(mode="json"),
    )
    _print(result, a.output)
    return 0


def cmd_nodes(a) -> int:
    got = _client().nodes(include_ended=a.all)
    if a.output == "json":
        _print(got, "json")
        return 0
    rows = [
        (
            n["node_id"][:16],
            n["status"],
            n.get("pool") or "-",
            n.get("gpu_type") or "-",
            f"{n['resources'].get('GPU', 0):g}",
            f"{(n.get('free') or {}).get('GPU', 0):g}" if n.get("free") is not None else "-",
            str(len(n["workloads"])),
            n.get("drain_deadline") or "",
        )
        for n in got["items"]
    ]
    head = ("NODE", "STATUS", "POOL", "GPU TYPE", "GPUS", "FREE", "WORK", "DRAIN DEADLINE")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for p in got.get("provisioning", []):
        print(f"(provisioning: {p['nodes']} node(s) of pool {p['pool']})")
    return 0


def _node_id(c, prefix: str) -> str:
    """A full node id from a unique prefix (ids are 56 hex digits; `orion nodes` shows 16)."""
    ids = [n["node_id"] for n in c.nodes(include_ended=False)["items"] if n["node_id"].startswith(prefix)]
    if len(ids) != 1:
        raise SystemExit(f"{prefix!r} matches {len(ids)} live nodes; give more of the id")
    return ids[0]


def cmd_cordon(a) -> int:
    c = _client()
    _print(c.cordon(_node_id(c, a.node), a.reason), a.output)
    return 0


def cmd_uncordon(a) -> int:
    c = _client()
    _print(c.uncordon(_node_id(c, a.node)), a.output)
    return 0


def cmd_drain(a) -> int:
    c = _client()
    _print(c.drain(_node_id(c, a.node), a.deadline, a.reason), a.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orion", description="Orion: AI workloads on Ray")
    sub = p.add_subparsers(dest="command", required=True)

    def out(sp):
        sp.add_argument("--output", "-o", choices=["table", "text", "json"], default="table")
        return sp

    up = out(sub.add_parser("up", help="start (or attach to) Ray and deploy Orion; idempotent"))
    up.add_argument("--address", help="attach to an existing Ray cluster (GCS address)")
    up.add_argument("--config", help="orion.yaml (default: ./orion.yaml if present)")
    up.add_argument("--port", type=int, help="API port (default 8000)")
    up.add_argument(
        "--demo",
        action="store_true",
        help="also serve SmolLM2-135M on CPU as the shared model 'smollm2' (/v1)",
    )
    up.add_argument("--num-cpus", type=float)
    up.add_argument("--num-gpus", type=float)
    up.add_argument("--resources", help="JSON of custom resources for the local head")
    up.add_argument("--ray-port", type=int, default=6379)
    up.add_argument("--dashboard-port", type=int, default=8265)
    up.add_argument("--control-plane", help="join this control plane as a region (docs/regions.md)")
    up.add_argument("--region", help="this region's name at the control plane")
    up.add_argument("--region-key", help="the region's key (or ORION_REGION_KEY)")
    up.add_argument("--region-label", action="append", default=[], help="KEY=VALUE, repeatable")
    up.add_argument("--heartbeat-s", type=float, help="heartbeat period (default 5)")
    up.set_defaults(fn=cmd_up)

    sub.add_parser("down", help="stop what `orion up` started").set_defaults(fn=cmd_down)

    s = out(sub.add_parser("submit", help="submit a workload from a YAML/JSON file ('-' = stdin)"))
    s.add_argument("file")
    s.add_argument("--wait", action="store_true", help="wait until it finishes")
    s.add_argument("--timeout", type=float, default=None)
    s.set_defaults(fn=cmd_submit)

    st = out(sub.add_parser("status", help="one workload"))
    st.add_argument("id")
    st.set_defaults(fn=cmd_status)

    ls = out(sub.add_parser("list", help="workloads, newest first"))
    ls.add_argument("--status")
    ls.add_argument("--tenant")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor", type=int)
    ls.set_defaults(fn=cmd_list)

    c = out(sub.add_parser("cancel", help="cancel a workload"))
    c.add_argument("id")
    c.set_defaults(fn=cmd_cancel)

    ex = out(sub.add_parser("explain", help="why a workload is not running yet"))
    ex.add_argument("id")
    ex.set_defaults(fn=cmd_explain)

    out(sub.add_parser("queue", help="queue depth and usage per tenant")).set_defaults(fn=cmd_queue)
    out(sub.add_parser("tenants", help="tenants with usage (admin)")).set_defaults(fn=cmd_tenants)

    rl = out(sub.add_parser("reload", help="apply orion.yaml's tenants without a restart (admin)"))
    rl.add_argument("--config", help="orion.yaml (default: the one `orion up` used)")
    rl.set_defaults(fn=cmd_reload)

    from .sim.cli import add_simulate_parser  # pure: no Ray is imported for a simulation

    add_simulate_parser(sub)

    from .autoscaler.cli import add_capacity_parser  # capacity reservations (admin API)

    add_capacity_parser(sub)

    nd = out(sub.add_parser("nodes", help="nodes with their lifecycle state (admin)"))
    nd.add_argument("--all", action="store_true", help="include terminated and lost nodes")
    nd.set_defaults(fn=cmd_nodes)
    co = out(sub.add_parser("cordon", help="no new placements on a node (admin)"))
    co.add_argument("node", help="node id (or a unique prefix)")
    co.add_argument("--reason")
    co.set_defaults(fn=cmd_cordon)
    uc = out(sub.add_parser("uncordon", help="allow placements on a node again (admin)"))
    uc.add_argument("node")
    uc.set_defaults(fn=cmd_uncordon)
    dr = out(
        sub.add_parser(
            "drain",
            help="cordon a node, let its work end, then preempt what is left back to the queue (admin)",
        )
    )
    dr.add_argument("node")
    dr.add_argument(
        "--deadline", type=float, default=300.0, help="seconds running work may take to end (default 300)"
    )
    dr.add_argument("--reason")
    dr.set_defaults(fn=cmd_drain)
    lg = sub.add_parser("logs", help="stdout/stderr of a workload")
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.set_defaults(fn=cmd_logs)
    from .serving.cli import add_commands  # deploy, deployments, scale, undeploy, release

    add_commands(sub, out)
    from .pipelines.cli import add_commands as add_pipeline_commands  # pipeline submit|status|cancel

    add_pipeline_commands(sub, out)
    from .operator.run import add_commands as add_operator_commands  # operator run (kopf, lazily)

    add_operator_commands(sub)
    from .pipelines.schedule_cli import add_commands as add_schedule_commands  # schedule|trigger|event

    add_schedule_commands(sub, out)
    from .regions_cli import add_commands as add_region_commands  # regions, region, config (issue 17)

    add_region_commands(sub)
    from .alerting.cli import add_commands as add_alert_commands  # alerts rules|render|secrets

    add_alert_commands(sub)
    from .backup_cli import add_commands as add_backup_commands  # backup, backups, restore

    add_backup_commands(sub, out)
    from .control_plane.cli import add_commands as add_control_plane_commands  # control-plane up|down|…

    add_control_plane_commands(sub, out)
    from .cost.cli import add_commands as add_cost_commands  # cost report|export (docs/cost.md)

    add_cost_commands(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except OrionError as exc:
        details = "; ".join(f"{d.get('field')}: {d.get('problem')}" for d in exc.details or [])
        print(f"error: {exc.message}" + (f" ({details})" if details else ""), file=sys.stderr)
        return 2
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
