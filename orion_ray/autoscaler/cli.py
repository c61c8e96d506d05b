"""``orion capacity ...``: capacity reservations and pool status through the admin API.

orion capacity reservations list [-o json]
orion capacity reservations create --instance-type p4d.24xlarge --zone us-east-1a --count 4
                                   [--end-date 2026-12-01T00:00:00Z] [--match targeted|open]
                                   [--tag team=research ...]
orion capacity reservations release cr-0123456789abcdef0
orion capacity status [-o json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional


class CapacityClient:
    """The capacity admin routes over an API session (``orion_ray.session.ApiSession``: auth,
    retries and error mapping)."""

    PATH = "/admin/v1/capacity/reservations"

    def __init__(self, client: Any):
        self.client = client

    def list(self) -> dict:
        return self.client._request("GET", self.PATH).json()

    def create(self, body: dict) -> dict:
        return self.client._request("POST", self.PATH, json=body).json()

    def release(self, reservation_id: str) -> dict:
        return self.client._request("DELETE", f"{self.PATH}/{reservation_id}").json()

    def status(self) -> dict:
        return self.client._request("GET", "/admin/v1/capacity/status").json()


def _capacity_client(url: Optional[str] = None, api_key: Optional[str] = None) -> CapacityClient:
    from ..session import ApiSession

    return CapacityClient(ApiSession(url=url, api_key=api_key))


def _tag_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (argparse reports anything else as a usage error, exit 2)."""
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"--tag takes KEY=VALUE, got {text!r}")
    return k, v


def _table(items: list[dict]) -> None:
    print(f"{'RESERVATION':<22} {'TYPE':<16} {'ZONE':<12} {'FREE':>5} {'TOTAL':>5} {'STATE':<10} END")
    for r in items:
        print(
            f"{r['reservation_id']:<22} {r['instance_type']:<16} {r['availability_zone']:<12} "
            f"{r['available']:>5} {r['total']:>5} {r['state']:<10} {r.get('end_date') or '-'}"
        )


def cmd_reservations(a) -> int:
    """Run one ``orion capacity reservations`` action."""
    c = _capacity_client()
    if a.action == "list":
        result = c.list()
        if a.output == "json":
            print(json.dumps(result, indent=2))
        else:
            _table(result["items"])
        return 0
    if a.action == "create":
        body = {
            "instance_type": a.instance_type,
            "availability_zone": a.zone,
            "count": a.count,
            "instance_match_criteria": a.match,
            "tags": dict(a.tag),
        }
        if a.end_date:
            body["end_date"] = a.end_date
        result = c.create(body)
    else:
        result = c.release(a.reservation_id)
    if a.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<24} {v}")
    return 0


def cmd_status(a) -> int:
    """``orion capacity status``: per pool, its sources, blocked zones and last failed launch."""
    result = _capacity_client().status()
    if a.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'POOL':<16} {'TYPE':<16} {'SOURCES':<30} {'BLOCKED':<28} LAST FAILURE")
    for name, p in result.get("pools", {}).items():
        blocked = (
            ", ".join(
                f"{b['source']}/{b.get('zone') or b.get('reservation_id')} {b['seconds_left']:.0f}s"
                for b in p["blocked"]
            )
            or "-"
        )
        failure = p.get("last_failure")
        last = f"{failure['at']} {failure['code']}: {failure['message']}" if failure else "-"
        print(f"{name:<16} {p['instance_type']:<16} {' > '.join(p['sources']):<30} {blocked:<28} {last}")
    return 0


def add_capacity_parser(sub) -> None:
    """Register ``orion capacity ...`` on the CLI's subparsers."""
    cap = sub.add_parser("capacity", help="capacity reservations for planned peaks (admin)")
    cap_sub = cap.add_subparsers(dest="capacity_command", required=True)
    st = cap_sub.add_parser("status", help="each pool's sources, blocked zones, last failure")
    st.add_argument("--output", "-o", choices=["table", "text", "json"], default="table")
    st.set_defaults(fn=cmd_status)
    res = cap_sub.add_parser("reservations", help="list, create or release capacity reservations")
    actions = res.add_subparsers(dest="action", required=True)

    def out(sp):
        sp.add_argument("--output", "-o", choices=["table", "text", "json"], default="table")
        sp.set_defaults(fn=cmd_reservations)
        return sp

    out(actions.add_parser("list", help="the cluster's reservations"))
    cr = out(actions.add_parser("create", help="reserve instances of a type in a zone"))
    cr.add_argument("--instance-type", required=True)
    cr.add_argument("--zone", required=True, help="availability zone, e.g. us-east-1a")
    cr.add_argument("--count", type=int, required=True)
    cr.add_argument("--end-date", help="ISO 8601 UTC; default: until released")
    cr.add_argument(
        "--match",
        choices=["targeted", "open"],
        default="targeted",
        help="targeted: only launches naming it use it (Orion's pools do)",
    )
    cr.add_argument("--tag", action="append", default=[], type=_tag_pair, metavar="KEY=VALUE")
    rl = out(actions.add_parser("release", help="cancel a reservation"))
    rl.add_argument("reservation_id")
