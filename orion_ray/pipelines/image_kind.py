"""The ``image`` node kind: a shell command in a container image, through Ray's container runtime
environment (``runtime_env.image_uri``, which runs the worker in the image with podman). Pure.

```yaml
- {id: render, kind: image, params: {image: "docker.io/library/python:3.11-slim"},
   entrypoint: "python -c 'print(42)'"}
```

It runs as a ``job`` workload whose entrypoint runs in the image. Only where the cluster has a
container runtime: ``orion.pipelines.container_runtime`` (``auto``: podman on the scheduler's
host); elsewhere the submission is a 422 naming ``dag_spec.nodes.<id>.kind`` with the reason. Like
an entrypoint node it takes no ``ins`` and returns no ``outs``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import Node, Submission

KIND = "image"
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,511}$")
PARAMS = ("image", "command", "entrypoint")


def node_problems(sub: "Submission", *, container_runtime: bool) -> list[dict[str, str]]:
    """A detail for each ``image`` node that cannot run here, or is incomplete."""
    out: list[dict[str, str]] = []
    for n in sub.dag_spec.nodes:
        if n.kind != KIND:
            continue
        field = f"dag_spec.nodes.{n.id}"
        if not container_runtime:
            out.append(
                {
                    "field": f"{field}.kind",
                    "problem": "this cluster has no container runtime (Ray's image_uri needs podman on its "
                    "nodes; an operator enables it with orion.pipelines.container_runtime: true)",
                }
            )
            continue
        image = n.params.get("image")
        if not isinstance(image, str) or not IMAGE_REF.match(image):
            out.append(
                {"field": f"{field}.params.image", "problem": "an image reference (registry/name:tag)"}
            )
        if not command(n):
            out.append({"field": f"{field}.entrypoint", "problem": "an image node needs the command to run"})
        for k in sorted(set(n.params) - set(PARAMS)):
            out.append(
                {
                    "field": f"{field}.params.{k[:64]}",
                    "problem": f"not an image node parameter ({', '.join(PARAMS)})",
                }
            )
        if n.ins or n.outs:
            out.append(
                {
                    "field": f"{field}.{'ins' if n.ins else 'outs'}",
                    "problem": "an image node takes no ins and returns no outs",
                }
            )
    return out


def command(node: "Node") -> str:
    """The command the image runs: ``entrypoint``, else ``params.command`` or ``params.entrypoint``."""
    cmd = node.entrypoint or node.params.get("command") or node.params.get("entrypoint")
    return cmd if isinstance(cmd, str) else ""


def workload_fields(node: "Node", env: dict[str, str]) -> dict[str, Any]:
    """The job workload of one attempt: the command, in the image."""
    runtime_env: dict[str, Any] = {"image_uri": node.params.get("image")}
    if env:
        runtime_env["env_vars"] = env
    return {"workload_type": "job", "entrypoint": command(node), "runtime_env": runtime_env}
