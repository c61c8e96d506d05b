"""A small KubeRay client over ``kubernetes.client.CustomObjectsApi`` (passed in).

There is no maintained KubeRay Python client; the custom-objects API is enough: create, read, list
and delete RayClusters, RayServices and RayJobs, and scale one worker group.

Scaling uses a JSON patch on ``/spec/workerGroupSpecs/<i>/replicas``: a merge patch would replace
the whole ``workerGroupSpecs`` list. The patch starts with a ``test`` of the group's name at that
index, so a list reordered since it was read fails (409) instead of scaling the wrong group. The
kubernetes client sends ``application/merge-patch+json`` for custom objects unless told otherwise
(checked with kubernetes 37), so the content type is passed explicitly.
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import Conflict, NotFound, OrionError, ValidationError
from .manifests import GROUP, PLURALS, VERSION, validate_manifest

JSON_PATCH = "application/json-patch+json"


class KubernetesError(OrionError):
    """The Kubernetes API failed in a way the caller cannot fix (reported as 502)."""

    status_code = 502
    code = "kubernetes_error"


def _mapped(exc: Exception, what: str) -> OrionError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or str(exc)
    if status == 404:
        return NotFound(f"{what} not found")
    if status == 409:
        return Conflict(f"{what}: {reason}")
    if status == 422:
        # an invalid object, or a JSON-patch "test" that failed: the object changed under us
        return Conflict(f"{what} was refused or changed meanwhile: {reason}")
    return KubernetesError(f"{what}: HTTP {status} {reason}"[:500])


class KubeRayClient:
    """RayCluster/RayService/RayJob objects in one namespace."""

    def __init__(self, api: Any, namespace: str = "default", validate: bool = True):
        self.api = api
        self.namespace = namespace
        self.validate = validate

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "ApiException" and getattr(exc, "status", None) is None:
                raise
            raise _mapped(exc, what) from None

    @staticmethod
    def _plural(kind: str) -> str:
        try:
            return PLURALS[kind]
        except KeyError:
            raise ValidationError(
                f"unknown KubeRay kind {kind!r}", [{"field": "kind", "problem": f"one of {sorted(PLURALS)}"}]
            ) from None

    def create(self, manifest: dict) -> dict:
        """Create the object a manifest describes (checked against the CRD schema first)."""
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        plural = self._plural(kind)
        if self.validate:
            problems = validate_manifest(manifest)
            if problems:
                raise ValidationError(f"invalid {kind} manifest", problems)
        ns = (manifest.get("metadata") or {}).get("namespace") or self.namespace
        name = manifest["metadata"]["name"]
        return self._call(
            f"{kind} {ns}/{name}",
            self.api.create_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            plural,
            manifest,
        )

    def get(self, kind: str, name: str) -> dict:
        return self._call(
            f"{kind} {self.namespace}/{name}",
            self.api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            self._plural(kind),
            name,
        )

    def list(self, kind: str, label_selector: Optional[str] = None) -> list[dict]:
        kw = {"label_selector": label_selector} if label_selector else {}
        result = self._call(
            f"{kind} list",
            self.api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            self._plural(kind),
            **kw,
        )
        return list(result.get("items", []))

    def delete(self, kind: str, name: str) -> dict:
        return self._call(
            f"{kind} {self.namespace}/{name}",
            self.api.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            self._plural(kind),
            name,
        )

    def scale_worker_group(self, cluster: str, group: str, replicas: int) -> dict:
        """Set one worker group's ``replicas`` (within its min/max) with a JSON patch.

        With in-tree autoscaling on, the autoscaler also writes ``replicas``; this is for
        operators and for Orion's own autoscaler when KubeRay's is off."""
        obj = self.get("RayCluster", cluster)
        groups = (obj.get("spec") or {}).get("workerGroupSpecs") or []
        index = next((i for i, g in enumerate(groups) if g.get("groupName") == group), None)
        if index is None:
            raise NotFound(
                f"RayCluster {cluster} has no worker group {group!r}; "
                f"groups: {[g.get('groupName') for g in groups]}"
            )
        g = groups[index]
        lo, hi = int(g.get("minReplicas", 0)), g.get("maxReplicas")
        if not isinstance(replicas, int) or replicas < lo or (hi is not None and replicas > hi):
            raise ValidationError(
                f"replicas must be within {lo}..{hi} for group {group!r}",
                [{"field": "replicas", "problem": f"got {replicas!r}"}],
            )
        base = f"/spec/workerGroupSpecs/{index}"
        patch = [
            {"op": "test", "path": f"{base}/groupName", "value": group},
            {"op": "replace" if "replicas" in g else "add", "path": f"{base}/replicas", "value": replicas},
        ]
        return self._call(
            f"RayCluster {self.namespace}/{cluster}",
            self.api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "rayclusters",
            cluster,
            patch,
            _content_type=JSON_PATCH,
        )
