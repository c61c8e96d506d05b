"""The SDK's control-plane calls (issue 17, docs/regions-config.md), mixed into ``OrionClient``
(``RegionCalls``) and ``AsyncOrionClient`` (``AsyncRegionCalls``): the same methods, the async
ones awaited. Point the client at the control plane's URL with its admin key, e.g.
``OrionClient(os.environ["ORION_CONTROL_PLANE_URL"], admin_key).regions()``."""

from __future__ import annotations

from typing import Any, Callable, Mapping
from urllib.parse import quote


def _region(name: str) -> str:
    return f"/api/v1/regions/{quote(name, safe='')}"


class RegionCalls:
    """Regions and configuration as data, over the control plane's REST API."""

    _request: Callable[..., Any]  # the client's (ApiSession's)

    def regions(self) -> list[dict[str, Any]]:
        """Every region: state, lost, heartbeat age, free GPUs, queue depth, applied and wanted
        config version (``drift``), launch P95."""
        items: list[dict[str, Any]] = self._request("GET", "/api/v1/regions").json()["items"]
        return items

    def region(self, name: str) -> dict[str, Any]:
        """One region (404 ``NotFound`` if unknown)."""
        out: dict[str, Any] = self._request("GET", _region(name)).json()
        return out

    def drain_region(self, name: str) -> dict[str, Any]:
        """Take nothing new there; what runs there finishes."""
        out: dict[str, Any] = self._request(
            "POST", _region(name) + "/state", json={"state": "draining"}
        ).json()
        return out

    def activate_region(self, name: str) -> dict[str, Any]:
        """Dispatch to the region again."""
        out: dict[str, Any] = self._request("POST", _region(name) + "/state", json={"state": "active"}).json()
        return out

    def publish_config(self, sections: Mapping[str, Any]) -> dict[str, Any]:
        """Publish ``{tenants, quotas, policies, pools, templates, prices}`` as the next snapshot:
        ``{version, sha256}`` (the same version when nothing changed)."""
        out: dict[str, Any] = self._request("PUT", "/api/v1/config", json={"sections": dict(sections)}).json()
        return out

    def config(self) -> dict[str, Any]:
        """The current snapshot: version, hash, body, and which regions applied it."""
        out: dict[str, Any] = self._request("GET", "/api/v1/config").json()
        return out


class AsyncRegionCalls:
    """``RegionCalls`` for ``AsyncOrionClient``."""

    _request: Callable[..., Any]  # the client's coroutine

    async def regions(self) -> list[dict[str, Any]]:
        """Every region (see ``RegionCalls.regions``)."""
        items: list[dict[str, Any]] = (await self._request("GET", "/api/v1/regions")).json()["items"]
        return items

    async def region(self, name: str) -> dict[str, Any]:
        """One region."""
        out: dict[str, Any] = (await self._request("GET", _region(name))).json()
        return out

    async def drain_region(self, name: str) -> dict[str, Any]:
        """Take nothing new there."""
        r = await self._request("POST", _region(name) + "/state", json={"state": "draining"})
        out: dict[str, Any] = r.json()
        return out

    async def activate_region(self, name: str) -> dict[str, Any]:
        """Dispatch to the region again."""
        r = await self._request("POST", _region(name) + "/state", json={"state": "active"})
        out: dict[str, Any] = r.json()
        return out

    async def publish_config(self, sections: Mapping[str, Any]) -> dict[str, Any]:
        """Publish the next snapshot: ``{version, sha256}``."""
        out: dict[str, Any] = (
            await self._request("PUT", "/api/v1/config", json={"sections": dict(sections)})
        ).json()
        return out

    async def config(self) -> dict[str, Any]:
        """The current snapshot and which regions applied it."""
        out: dict[str, Any] = (await self._request("GET", "/api/v1/config")).json()
        return out
