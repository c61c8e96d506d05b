"""``orion up --control-plane URL --region NAME --region-key KEY``: flags over ``orion.region``."""

from __future__ import annotations

import os
from typing import Any

from ..config import OrionConfig
from ..credentials import read_credentials
from ..region_join_config import RegionJoinConfig


def join_settings(a: Any, cfg: OrionConfig) -> tuple[RegionJoinConfig, str]:
    """The join settings (flags win over orion.yaml) and the region key."""
    base = cfg.orion.region.model_dump() if cfg.orion.region is not None else {}
    if a.control_plane:
        base["control_plane"] = a.control_plane
    if a.region:
        base["name"] = a.region
    if a.heartbeat_s:
        base["heartbeat_s"] = a.heartbeat_s
    for kv in a.region_label or []:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"--region-label {kv!r}: expected KEY=VALUE")
        base.setdefault("labels", {})[k] = v
    if "name" not in base:
        raise ValueError("--region: required with --control-plane (this region's name)")
    join = RegionJoinConfig.model_validate(base)
    key = a.region_key or os.environ.get(join.key_env)
    if not key:
        raise ValueError(f"--region-key or ${join.key_env}: the region's key is required to join")
    return join, key


def join_from_cli(a: Any, cfg: OrionConfig, info: dict[str, Any]) -> str:
    """Start the region agent for the Orion ``orion up`` just brought up; a line to print."""
    from .agent_process import start

    join, key = join_settings(a, cfg)
    creds = read_credentials()
    st = start(
        control_plane=join.control_plane,
        region=join.name,
        region_key=key,
        region_url=info["api_url"],
        admin_key=creds["api_key"],
        store_path=cfg.orion.store.resolved_path(),
        heartbeat_s=join.heartbeat_s,
        labels=join.labels,
        outbox_keep=join.outbox_keep,
        resync_terminal_s=join.resync_terminal_s,
    )
    return f"  region:     {join.name} joins {join.control_plane} (agent pid {st['pid']})"
