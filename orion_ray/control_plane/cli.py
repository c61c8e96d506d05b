"""``orion control-plane up|down|status|region-key NAME`` (docs/regions.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def _home(a: Any) -> Path:
    from .process import default_home

    return Path(a.home).expanduser() if a.home else default_home()


def cmd_up(a: Any) -> int:
    from .process import up

    settings = json.loads(Path(a.settings).read_text()) if a.settings else None
    info = up(_home(a), host=a.host, port=a.port, settings=settings)
    if a.output == "json":
        print(json.dumps(info, indent=2))
    else:
        print(f"control plane is up.\n  API:        {info['url']}\n  admin key:  {info['credentials']}")
    return 0


def cmd_down(a: Any) -> int:
    from .process import down

    print("stopped" if down(_home(a)) else "not running")
    return 0


def cmd_status(a: Any) -> int:
    from .process import status

    st = status(_home(a))
    if a.output == "json" or not st.get("running"):
        print(json.dumps(st, indent=2))
        return 0 if st.get("running") else 1
    print(f"running at {st['url']} (pid {st['pid']})")
    for r in st.get("regions") or []:
        print(
            f"  {r['name']:<16} {r['state']:<9} queue {r['queue_depth']:<4} "
            f"config {r['applied_config_version']}/{r['wanted_config_version']}"
        )
    return 0


def cmd_region_key(a: Any) -> int:
    from .process import region_key

    print(region_key(_home(a), a.name))
    return 0


def add_commands(sub: Any, out: Callable[[Any], Any]) -> None:
    """Register ``orion control-plane …`` on the CLI's subparsers."""
    cp = sub.add_parser("control-plane", help="the global control plane over regions (docs/regions.md)")
    cps = cp.add_subparsers(dest="cp_command", required=True)

    def common(p: Any) -> Any:
        p.add_argument(
            "--home", help="its files (default $ORION_CONTROL_PLANE_HOME or ~/.orion/control-plane)"
        )
        return p

    u = out(common(cps.add_parser("up", help="start the control plane (no Ray needed); idempotent")))
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=8100)
    u.add_argument("--settings", help="a JSON file of settings (region_lost_timeout_s, tenants, quotas …)")
    u.set_defaults(fn=cmd_up)
    common(cps.add_parser("down", help="stop it")).set_defaults(fn=cmd_down)
    out(common(cps.add_parser("status", help="whether it runs, and its regions"))).set_defaults(fn=cmd_status)
    k = common(cps.add_parser("region-key", help="a new key for one region (printed once)"))
    k.add_argument("name")
    k.set_defaults(fn=cmd_region_key)
