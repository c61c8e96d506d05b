"""Reading one output of a run: ``GET /api/orch/outputs/{submission_id}?node=&name=``, and the
setup of the data side of pipelines from ``orion.pipelines`` (the artifact store, whether the
cluster runs containers). No Ray, no FastAPI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from ..config import PipelinesConfig
from ..errors import NotFound, OrionError, PayloadTooLarge, ValidationError
from .artifacts import ArtifactError, ArtifactTooLarge, ArtifactUnavailable, open_artifacts
from .dataflow import DataFlow
from .records import SUCCEEDED, NodeRun, PipelineRun
from .refs import is_ref, uri_of

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # what one read of an output answers at most, unless asked
MAX_MAX_BYTES = 256 * 1024 * 1024


class ArtifactStoreUnavailable(OrionError):
    """The artifact store did not answer: try again."""

    status_code = 503


def data_flow(cfg: Optional[PipelinesConfig], *, store_path: Optional[str]) -> Optional[DataFlow]:
    """The controller's ``DataFlow`` from ``orion.pipelines`` (defaults without it): a local
    store in ``artifacts/`` next to the store file (so under ORION_HOME by default). None
    without a store file and a configured root (an in-memory store keeps values inline)."""
    cfg = cfg or PipelinesConfig()
    a = cfg.artifacts
    if store_path == ":memory:":
        store_path = None
    if a.backend == "local" and not a.root and not store_path:
        return None
    root = str(Path(store_path).expanduser().resolve().parent / "artifacts") if store_path else ""
    return DataFlow(open_artifacts(a, default_root=root), inline_max_bytes=a.inline_max_bytes)


def has_container_runtime(cfg: Optional[PipelinesConfig], which: Any = shutil.which) -> bool:
    """Whether ``image`` nodes may run: the configured answer, or (``auto``) whether podman — what
    Ray's ``image_uri`` runtime environment runs containers with — is on this host's PATH."""
    setting = (cfg or PipelinesConfig()).container_runtime
    if setting == "auto":
        return which("podman") is not None
    return bool(setting)


def read_output(
    run: PipelineRun,
    nodes: list[NodeRun],
    *,
    node: str,
    name: str,
    data: Optional[DataFlow],
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """One output of ``run`` as ``{"uri": artifact URI or None, "data": its JSON bytes}``: the
    inline value, or the artifact's bytes read under the run's own prefix, at most ``max_bytes``
    (413 past it). 404 for a node or output the run does not have (yet)."""
    if not 1 <= max_bytes <= MAX_MAX_BYTES:
        raise ValidationError(
            "max_bytes out of range", [{"field": "max_bytes", "problem": f"must be in [1, {MAX_MAX_BYTES}]"}]
        )
    row = next((n for n in nodes if n.node_id == node), None)
    if row is None:
        raise NotFound(f"run {run.submission_id!r} has no node {node[:64]!r}")
    if row.status != SUCCEEDED or not row.outputs or name not in row.outputs:
        have = ", ".join(sorted(row.outputs or {})) or "none"
        raise NotFound(
            f"node {node!r} has no output {name[:64]!r} (its state is {row.status}; outputs: {have})"
        )
    value = row.outputs[name]
    if not is_ref(value):
        text = json.dumps(value, allow_nan=False).encode()
        if len(text) > max_bytes:
            raise PayloadTooLarge(f"the output is {len(text)} bytes, over max_bytes={max_bytes}")
        return {"uri": None, "data": text}
    if data is None:
        raise ArtifactStoreUnavailable("this Orion has no artifact store configured")
    try:
        return {"uri": uri_of(value), "data": data.read(run, value, max_bytes=max_bytes)}
    except ArtifactTooLarge as exc:
        raise PayloadTooLarge(f"{exc}; ask with a larger max_bytes (at most {MAX_MAX_BYTES})") from None
    except ArtifactUnavailable as exc:
        raise ArtifactStoreUnavailable(str(exc)) from None
    except ArtifactError as exc:
        raise NotFound(f"output {name!r} of node {node!r}: {exc}") from None
