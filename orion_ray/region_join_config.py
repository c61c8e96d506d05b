"""``orion.region``: how a regional Orion joins a control plane (docs/regions.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegionJoinConfig(BaseModel):
    """The control plane's URL, this region's name, where its key is read from, how often it
    heartbeats, and its labels (what ``region_selector`` matches: data locality, GPU type …)."""

    model_config = ConfigDict(extra="forbid")
    control_plane: str = Field(pattern=r"^https?://", max_length=512)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # the key itself never sits in orion.yaml: the variable that holds it
    key_env: str = Field("ORION_REGION_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    heartbeat_s: float = Field(5.0, gt=0, le=300)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    # unacknowledged status changes kept while the control plane is away; past it the oldest go and
    # the agent sends a full listing instead (a resync: docs/regions.md)
    outbox_keep: int = Field(10_000, ge=1, le=1_000_000)
    # how far back ended workloads go into a resync listing
    resync_terminal_s: float = Field(86_400.0, gt=0, le=30 * 86_400)
