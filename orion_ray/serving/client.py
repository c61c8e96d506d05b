"""SDK calls for model serving (the SDK client plus the deployment and release routes)."""

from __future__ import annotations

from typing import Any, Optional

from ..session import ApiSession


class ServingClient(ApiSession):
    """The serving routes (admin key) over an API session (auth, retries, typed errors)."""

    def deploy(self, spec: dict) -> dict:
        """Deploy one model version."""
        return self._request("POST", "/internal/deployments/create", json=spec).json()

    def deployments(
        self, model_id: Optional[str] = None, tenant_id: Optional[str] = None, status: Optional[str] = None
    ) -> list[dict]:
        params = {
            k: v
            for k, v in {"model_id": model_id, "tenant_id": tenant_id, "status": status}.items()
            if v is not None
        }
        return self._request("GET", "/internal/deployments", params=params).json()["items"]

    def deployment(self, dep_id: str) -> dict:
        return self._request("GET", f"/internal/deployments/{dep_id}/status").json()

    def undeploy(self, dep_id: str) -> dict:
        return self._request("DELETE", f"/internal/deployments/{dep_id}").json()

    def restart(self, dep_id: str) -> dict:
        return self._request("POST", f"/internal/deployments/{dep_id}/restart").json()

    def scale(self, model_id: str, body: dict) -> list[dict]:
        return self._request("POST", f"/admin/v1/models/{model_id}/scale", json=body).json()["items"]

    def set_release(self, spec: dict) -> dict:
        """Apply a release (weighted, canary, rolling, blue-green, ab; optional shadow)."""
        return self._request("PUT", f"/internal/models/{spec.get('model_id')}/release", json=spec).json()

    def release(self, model_id: str) -> dict:
        return self._request("GET", f"/internal/models/{model_id}/release").json()

    def rollback(self, model_id: str) -> dict:
        return self._request("POST", f"/internal/models/{model_id}/rollback").json()

    def events(self, model_id: Optional[str] = None, limit: int = 100) -> list[dict]:
        params: dict[str, Any] = {"limit": limit}
        if model_id:
            params["model_id"] = model_id
        return self._request("GET", "/internal/events", params=params).json()["items"]
