"""The Serve application builder a RayService names in its ``serveConfigV2``.

Serve calls ``orion_api(args)`` with the application's ``args`` from the manifest; it makes sure
Orion's control plane runs (the scheduler, the autoscaler and the serving manager: get-or-create,
never a second one) and returns Orion's REST API application, as ``orion up`` would deploy them.
Only key hashes travel in the manifest, never keys.

The control plane's credential (``orion_ray.control``) comes from a Kubernetes Secret mounted
read-only on the head Pod only, in ``control_token_dir``. It never travels as an argument Serve
keeps: Serve stores an application's ``args`` in Ray's internal KV, which any workload can read.
So the file is read on the head, by a task pinned there (Serve may run this builder on any node),
which hands the token to each actor as a constructor argument (Ray keeps those for restarts, as
``orion up`` does); the API replica, pinned to the head too, reads the same file itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..control import TOKEN_FILE
from ..errors import ConfigError

TOKEN_DIR_FIELD = "control_token_dir"


class OrionApiArgs(BaseModel):
    """``args:`` of the ``orion-api`` application in a RayService."""

    model_config = ConfigDict(extra="forbid")
    admin_key_sha256: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        min_length=1, description="hex SHA-256 of admin keys (64 lowercase hex digits)"
    )
    control_token_dir: str = Field(
        min_length=1,
        description=(
            "directory on the head where the Secret holding the control plane's credential "
            f"(key {TOKEN_FILE!r}) is mounted read-only"
        ),
    )
    config_path: Optional[str] = Field(None, description="orion.yaml inside the image")
    max_body_bytes: Optional[int] = Field(None, ge=1024)


def read_control_token(token_dir: str) -> str:
    """The credential in ``<token_dir>/control_token``; a ``ConfigError`` naming
    ``control_token_dir`` when the file is missing, unreadable or empty (an Orion that started
    without it would leave every privileged actor method open to workload code)."""
    path = Path(token_dir) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except OSError as exc:
        problem = f"{path} cannot be read on the head ({exc.strerror or type(exc).__name__})"
    else:
        if token:
            return token
        problem = f"{path} is empty"
    raise ConfigError(
        f"{TOKEN_DIR_FIELD}: {problem}; mount the Secret `orion-control` (key {TOKEN_FILE!r}) there",
        [{"field": TOKEN_DIR_FIELD, "problem": problem}],
    )


def deploy_control_plane(config_json: dict[str, Any], token_dir: str, wait_s: float = 300.0) -> str:
    """On the head: read the credential and get-or-create the scheduler, the autoscaler and the
    serving manager with it, the same set ``orion up`` deploys; returns "ok".

    An actor that already runs keeps the token it was created with (get-or-create), so a rolling
    update of the RayService never makes a second one; rotating the Secret needs the actors
    restarted by hand."""
    import ray

    from ..autoscaler.actor import deploy_autoscaler
    from ..config import OrionConfig
    from ..scheduler.actor import deploy_scheduler
    from ..serving.actor import deploy_manager

    token = read_control_token(token_dir)
    config = OrionConfig.model_validate(config_json)
    scheduler = deploy_scheduler(config, None, token)
    ray.get(scheduler.ensure_started.remote(), timeout=wait_s)
    autoscaler = deploy_autoscaler(config, token)  # scaling, node release, GPU telemetry
    ray.get(autoscaler.ensure_started.remote(), timeout=wait_s)
    deploy_manager(control_token=token)  # model serving: deployments, releases, the serving GPU account
    return "ok"


def _on_head(config_json: dict[str, Any], token_dir: str) -> None:
    """Run ``deploy_control_plane`` in a task pinned to the head (where the Secret is mounted);
    its ``ConfigError`` is raised here as itself."""
    import ray

    from ..runtime.ray_runtime import on_head_node

    task = ray.remote(num_cpus=0, max_retries=0)(deploy_control_plane)
    ref = task.options(scheduling_strategy=on_head_node()).remote(config_json, token_dir)
    try:
        ray.get(ref, timeout=600)  # each step inside has its own, shorter timeout
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, ConfigError):
            raise exc.cause from None
        raise


def orion_api(args: dict):
    """Serve application builder: Orion's control plane (get-or-create, guarded by the credential
    in ``control_token_dir``) and the API app over it."""
    a = OrionApiArgs.model_validate(args)
    from ..api.serve_app import build_api_app
    from ..config import load_config

    config = load_config(a.config_path)
    config.orion.store.path = config.orion.store.resolved_path()
    _on_head(config.model_dump(mode="json"), a.control_token_dir)
    return build_api_app(
        a.admin_key_sha256,
        a.max_body_bytes or config.orion.api.max_body_bytes,
        rate_limit=config.orion.api.rate_limit.model_dump(mode="json"),
        # the directory, never the token: the replica (pinned to the head) reads the file itself
        control_token_home=a.control_token_dir,
    )
