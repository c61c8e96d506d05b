"""``orion regions``, ``orion region drain|activate|show NAME`` and ``orion config publish|show``
against a control plane (issue 17, docs/regions-config.md).

The control plane is named by ``--control-plane URL`` (or ``ORION_CONTROL_PLANE_URL``) and its
admin key by ``ORION_CONTROL_PLANE_KEY`` (or ``--key``); neither falls back to the local Orion's
URL or credentials, so a regional admin key is never sent to another host by mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from .policy.config_snapshot import SECTIONS


def make_client(url: str, key: str) -> Any:
    """The SDK client for the control plane (tests replace this with an in-process one)."""
    from .client import OrionClient

    return OrionClient(url, key)


def _client(a: argparse.Namespace) -> Any:
    url = a.control_plane or os.environ.get("ORION_CONTROL_PLANE_URL")
    key = a.key or os.environ.get("ORION_CONTROL_PLANE_KEY")
    if not url:
        raise ValueError("the control plane's URL: --control-plane URL or ORION_CONTROL_PLANE_URL")
    if not key:
        raise ValueError("the control plane's admin key: ORION_CONTROL_PLANE_KEY or --key")
    return make_client(url, key)


def sections_from_document(doc: Any) -> dict[str, Any]:
    """The sections to publish from a file: either the sections themselves (``tenants``,
    ``quotas``, ``policies``, ``pools``, ``templates``, ``prices``, each a mapping by name or,
    for tenants and pools, a list with ``id`` / ``name``), or an ``orion.yaml`` (``orion.tenants``,
    ``orion.worker_pools``, ``orion.policy``). A tenant's ``api_key_env`` names a variable of one
    machine's ``orion up`` and is dropped; key hashes (``api_key_sha256``) are kept."""
    if not isinstance(doc, Mapping):
        raise ValueError("the config file must be a mapping of sections")
    if "orion" in doc and isinstance(doc["orion"], Mapping):
        o = doc["orion"]
        doc = {
            "tenants": o.get("tenants") or [],
            "pools": o.get("worker_pools") or [],
            "policies": o.get("policy") or {},
        }
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a config section (one of {', '.join(SECTIONS)})")
    out: dict[str, Any] = {}
    for section, value in doc.items():
        if isinstance(value, list):
            key = "id" if section == "tenants" else "name"
            if section not in ("tenants", "pools") or not all(
                isinstance(v, Mapping) and key in v for v in value
            ):
                raise ValueError(
                    f"{section}: a mapping by name (a list only for tenants with id, pools with name)"
                )
            value = {str(v[key]): {k: x for k, x in v.items() if k != key} for v in value}
        if section == "tenants" and isinstance(value, Mapping):
            value = {t: {k: x for k, x in (s or {}).items() if k != "api_key_env"} for t, s in value.items()}
        out[section] = value
    return out


def _age(s: Optional[float]) -> str:
    if s is None:
        return "never"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m"


def region_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    """The ``orion regions`` table, header first."""
    rows = [["NAME", "STATE", "LOST", "HEARTBEAT", "FREE GPUS", "QUEUE", "CONFIG", "LAUNCH P95"]]
    for r in items:
        gpus = ",".join(f"{t}:{n:g}" for t, n in sorted((r.get("free_gpus") or {}).items())) or "-"
        applied, wanted = r.get("applied_config_version", 0), r.get("wanted_config_version", 0)
        p95 = r.get("launch_p95_s")
        rows.append(
            [
                r["name"],
                r["state"],
                "yes" if r.get("lost") else "no",
                _age(r.get("heartbeat_age_s")),
                gpus,
                str(r.get("queue_depth", 0)),
                f"{applied}/{wanted}" + (" drift" if r.get("drift") else ""),
                f"{p95:.0f}s" if p95 is not None else "-",
            ]
        )
    return rows


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _show(obj: Any, output: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if output == "json" else yaml.safe_dump(obj, sort_keys=True))


def cmd_regions(a: argparse.Namespace) -> int:
    items = _client(a).regions()
    if a.output == "json":
        print(json.dumps(items, indent=2, default=str))
    else:
        _table(region_rows(items))
    return 0


def cmd_region(a: argparse.Namespace) -> int:
    c = _client(a)
    calls: dict[str, Callable[[str], Any]] = {
        "drain": c.drain_region,
        "activate": c.activate_region,
        "show": c.region,
    }
    _show(calls[a.action](a.name), a.output)
    return 0


def cmd_config(a: argparse.Namespace) -> int:
    c = _client(a)
    if a.action == "show":
        got = c.config()
        if not a.body:
            got.pop("body", None)
        _show(got, a.output)
        return 0
    text = sys.stdin.read() if a.file == "-" else Path(a.file).read_text()
    published = c.publish_config(sections_from_document(yaml.safe_load(text)))
    _show({**published, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, a.output)
    return 0


def add_commands(sub: Any) -> None:
    """The commands, on the ``orion`` parser's subparsers."""

    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--control-plane", help="the control plane's URL (default: $ORION_CONTROL_PLANE_URL)")
        sp.add_argument("--key", help="its admin key (default: $ORION_CONTROL_PLANE_KEY)")
        sp.add_argument("--output", "-o", choices=["table", "text", "json"], default="table")
        return sp

    common(
        sub.add_parser("regions", help="every region: state, capacity, queue, config drift, launch P95")
    ).set_defaults(fn=cmd_regions)
    rg = common(sub.add_parser("region", help="drain, activate or show one region (control plane)"))
    rg.add_argument("action", choices=["drain", "activate", "show"])
    rg.add_argument("name")
    rg.set_defaults(fn=cmd_region)
    cf = common(sub.add_parser("config", help="publish or show the control plane's configuration"))
    cf.add_argument("action", choices=["publish", "show"])
    cf.add_argument(
        "file", nargs="?", default="-", help="publish: a YAML/JSON file of sections ('-' = stdin)"
    )
    cf.add_argument("--body", action="store_true", help="show: include the snapshot's body")
    cf.set_defaults(fn=cmd_config)
