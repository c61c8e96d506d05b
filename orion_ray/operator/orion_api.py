"""The operator's only way to Orion: its REST API, with a key from a Secret.

Every call raises Orion's typed errors (``orion_ray.errors``): ``NotFound`` for a record that is
gone, ``Conflict`` for one that exists, ``ValidationError`` for a refused spec,
``SchedulerUnavailable`` when Orion cannot be reached. The key is sent as a header and never
logged (it is not in any message this module builds).
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import NotFound
from ..session import ApiSession


class OrionApi(ApiSession):
    """The routes the operator uses (an admin key for serving; a tenant key suffices for batch)."""

    # -- batch workloads -------------------------------------------------------------------------
    def submit_workload(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/workloads`` (idempotent on ``metadata.request_id``)."""
        return self._request("POST", "/api/v1/workloads", json=body).json()

    def workload(self, workload_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/workloads/{workload_id}").json()

    def cancel_workload(self, workload_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/api/v1/workloads/{workload_id}").json()

    # -- pipelines -------------------------------------------------------------------------------
    def submit_pipeline(self, body: dict[str, Any], tenant: str) -> dict[str, Any]:
        """``POST /api/orch/submit`` (idempotent on ``runtime_params.submission_id``)."""
        return self._request("POST", "/api/orch/submit", json=body, params={"tenant_id": tenant}).json()

    def pipeline(self, submission_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/orch/status/{submission_id}").json()

    def cancel_pipeline(self, submission_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/orch/cancel/{submission_id}").json()

    # -- serving ---------------------------------------------------------------------------------
    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/internal/deployments/create", json=body).json()

    def deployment(self, dep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/internal/deployments/{dep_id}/status").json()

    def undeploy(self, dep_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/internal/deployments/{dep_id}").json()

    def scale(self, model_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._request("POST", f"/admin/v1/models/{model_id}/scale", json=body).json()["items"]

    def set_release(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("PUT", f"/internal/models/{body['model_id']}/release", json=body).json()

    def release(self, model_id: str) -> Optional[dict[str, Any]]:
        """The model's release, or None when it has none."""
        try:
            return self._request("GET", f"/internal/models/{model_id}/release").json()
        except NotFound:
            return None
