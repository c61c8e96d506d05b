"""One attempt of a node as an ordinary Orion workload. Pure (models only).

A node with a function (``refs[id]`` or ``params.function``) is a ``task`` workload called with
keyword arguments: its ``params`` (less ``function``/``entrypoint``) and, for each of its ``ins``,
the upstream output of that name. A node with an ``entrypoint`` is a ``job`` workload. Both get
the node's resources over ``resources.default``, the run's priority, ``runtime_params.env`` then
the node's ``env`` as environment variables (through the same runtime_env allowlist as every
workload), the run's labels plus ``orion.pipeline.*`` ones, and the idempotency key
``<submission_id>/<node>/<attempt>`` as ``metadata.request_id``. A node's retries are the
engine's (each attempt its own workload), so the workload's own ``max_retries`` is 0.
Plugin kinds give their workload spec through ``workload_spec`` (see ``kinds.py``).
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ValidationError, pydantic_details
from ..models import WorkloadSpec
from . import image_kind, kinds, sql_kind
from .spec import Node, Submission


def request_id(submission_id: str, node_id: str, attempt: int) -> str:
    """The idempotency key of one attempt of one node of one run."""
    return f"{submission_id}/{node_id}/{attempt}"


def node_spec(
    sub: Submission,
    node: Node,
    *,
    submission_id: str,
    attempt: int,
    inputs: dict[str, Any],
    tenant_id: Optional[str] = None,
) -> WorkloadSpec:
    """The workload spec of attempt ``attempt`` of ``node``; ``ValidationError`` whose fields are
    under ``dag_spec.nodes.<id>`` when the node cannot be such a workload."""
    rp = sub.runtime_params
    env = {**rp.env, **node.env}
    labels = {
        **rp.labels,
        "orion.pipeline": sub.dag_spec.pipeline_id,
        "orion.pipeline.submission": submission_id,
        "orion.pipeline.node": node.id,
    }
    base: dict[str, Any] = {
        "priority": sub.priority().value,
        "max_retries": 0,
        "metadata": {
            "tenant_id": tenant_id,
            "request_id": request_id(submission_id, node.id, attempt),
            "labels": labels,
        },
    }
    if node.timeout_s is not None:
        base["timeout_s"] = node.timeout_s
    try:
        if node.resources is not None or sub.dag_spec.resources.default is not None:
            own = node.resources or type(sub.dag_spec.resources.default)()  # type: ignore[misc]
            base["resources"] = own.merged_over(sub.dag_spec.resources.default).model_dump(exclude_none=True)
        if node.kind == sql_kind.KIND:
            fields = sql_kind.workload_fields(node, inputs)
        elif node.kind == image_kind.KIND:
            fields = image_kind.workload_fields(node, env)
        elif node.kind in kinds.BUILTIN:
            fields = _builtin(sub, node, inputs)
        else:
            fields = _plugin(node, inputs=inputs, env=env, priority=base["priority"])
        if env and "runtime_env" not in fields:
            fields["runtime_env"] = {"env_vars": env}
        return WorkloadSpec.model_validate({**fields, **base})
    except ValidationError as exc:
        raise _under(node, exc.details) from None
    except Exception as exc:  # pydantic's error → the contract's, under the node
        raise _under(node, pydantic_details(exc)) from None


def _builtin(sub: Submission, node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
    fn, cmd = node.function(sub.refs), node.command()
    if fn:
        return {"workload_type": "task", "function": fn, "kwargs": {**node.call_params(), **inputs}}
    if cmd:
        return {"workload_type": "job", "entrypoint": cmd}
    raise ValidationError(
        "node names no code",
        [{"field": "params.function", "problem": "set params.function, refs or entrypoint"}],
    )


def _plugin(node: Node, **kw: Any) -> dict[str, Any]:
    ep = kinds.plugin_kinds().get(node.kind)
    if ep is None:
        raise ValidationError(
            "kind not installed", [{"field": "kind", "problem": f"{node.kind!r} is not installed"}]
        )
    out = ep.load().workload_spec(node, **kw)
    if not isinstance(out, dict):
        raise ValidationError(
            "plugin error", [{"field": "kind", "problem": "the plugin returned no workload spec"}]
        )
    return dict(out)


def _under(node: Node, details: list[dict[str, Any]]) -> ValidationError:
    moved = [
        {
            "field": f"dag_spec.nodes.{node.id}" + (f".{d.get('field')}" if d.get("field") else ""),
            "problem": d.get("problem", ""),
        }
        for d in details
    ] or [{"field": f"dag_spec.nodes.{node.id}", "problem": "cannot run as a workload"}]
    return ValidationError(f"node {node.id!r} cannot run as a workload: {moved[0]['problem']}", moved)
