"""The asyncio SDK: ``AsyncOrionClient``, the same calls as ``OrionClient`` on ``httpx.AsyncClient``.

Same credential resolution (arguments, then ``ORION_URL``/``ORION_API_KEY``, then
``~/.orion/credentials``), the same typed errors (``_error_from``) and the same retries on 429/503
honouring ``Retry-After`` (``_retry_after``).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import httpx

from . import credentials
from .client import TERMINAL, WorkloadResult, _error_from, _retry_after
from .errors import SchedulerUnavailable

_sleep = asyncio.sleep  # one place to wait between retries and polls (tests replace it)


class AsyncWorkloadHandle:
    """A submitted workload: its id and coroutines to follow it."""

    def __init__(self, client: "AsyncOrionClient", ack: dict):
        self._client = client
        self.ack = ack
        self.workload_id: str = ack["workload_id"]

    async def status(self) -> str:
        return (await self._client.get_workload(self.workload_id))["status"]

    async def refresh(self) -> dict:
        return await self._client.get_workload(self.workload_id)

    async def wait_for_completion(self, timeout: Optional[float] = None,
                                  poll_s: float = 0.2) -> WorkloadResult:
        return await self._client.wait_for_completion(self.workload_id, timeout, poll_s)

    async def cancel(self) -> dict:
        return await self._client.cancel(self.workload_id)

    async def logs(self) -> str:
        return await self._client.logs(self.workload_id)

    def __repr__(self) -> str:
        return f"AsyncWorkloadHandle({self.workload_id!r})"


class AsyncOrionClient:
    """``AsyncOrionClient(url, api_key)``; use ``async with`` or ``await client.aclose()``.
    ``transport`` (an ``httpx.AsyncBaseTransport``) serves an in-process app in tests."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 30.0, max_retries: int = 5,
                 transport: Optional[httpx.AsyncBaseTransport] = None):
        self.url, self.api_key = credentials.resolve(url, api_key)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout,
                                       transport=transport)
        self.max_retries = max_retries

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def _request(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                r = await self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise SchedulerUnavailable(f"cannot reach Orion at {self.url}: {exc}") from None
                await _sleep(min(5.0, 0.2 * 2 ** attempt))
                continue
            if r.status_code in (429, 503) and attempt < self.max_retries:
                await _sleep(_retry_after(r, attempt))
                continue
            if r.status_code >= 400:
                raise _error_from(r)
            return r
        raise AssertionError("unreachable")

    # -- workloads ------------------------------------------------------------------------------
    async def submit_workload(self, spec: Optional[dict] = None,
                              **fields: Any) -> AsyncWorkloadHandle:
        """Submit ``spec`` (a dict) or keyword fields; returns a handle to follow it."""
        body = dict(spec or {}, **fields)
        r = await self._request("POST", "/api/v1/workloads", json=body)
        return AsyncWorkloadHandle(self, r.json())

    async def get_workload(self, workload_id: str) -> dict:
        return (await self._request("GET", f"/api/v1/workloads/{workload_id}")).json()

    async def list_workloads(self, status: Optional[str] = None, tenant_id: Optional[str] = None,
                             limit: int = 50, cursor: Optional[int] = None) -> dict:
        params = {k: v for k, v in {"status": status, "tenant_id": tenant_id, "limit": limit,
                                    "cursor": cursor}.items() if v is not None}
        return (await self._request("GET", "/api/v1/workloads", params=params)).json()

    async def cancel(self, workload_id: str) -> dict:
        return (await self._request("DELETE", f"/api/v1/workloads/{workload_id}")).json()

    async def logs(self, workload_id: str) -> str:
        return (await self._request("GET", f"/api/v1/workloads/{workload_id}/logs")).text

    async def explain(self, workload_id: str) -> dict:
        """Position in the queue and what the workload waits for."""
        return (await self._request("GET", f"/api/v1/workloads/{workload_id}/explain")).json()

    async def queue(self) -> dict:
        return (await self._request("GET", "/api/v1/queue")).json()

    async def tenants(self) -> dict:
        """Every tenant with usage (admin key)."""
        return (await self._request("GET", "/api/v1/tenants")).json()

    async def reload(self, tenants: list[dict], keys: dict[str, str],
                     policy: Optional[dict] = None) -> dict:
        """Replace the tenants, key hashes (``{sha256: tenant_id}``) and, if given, the policy
        section without a restart (admin)."""
        body = {"tenants": tenants, "keys": keys, **({"policy": policy} if policy else {})}
        return (await self._request("POST", "/admin/v1/reload", json=body)).json()

    async def audit(self, limit: int = 100, cursor: Optional[int] = None) -> dict:
        params = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
        return (await self._request("GET", "/admin/v1/audit", params=params)).json()

    async def health(self) -> dict:
        """The ``/health`` body, answered 200 or 503 (no retry: the answer is the point)."""
        return (await self._http.get("/health")).json()

    async def wait_for_completion(self, workload_id: str, timeout: Optional[float] = None,
                                  poll_s: float = 0.2) -> WorkloadResult:
        """Poll until the workload is terminal; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            w = await self.get_workload(workload_id)
            if w["status"] in TERMINAL:
                return WorkloadResult(workload_id, w["status"], w.get("result"), w.get("error"), w)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workload {workload_id} still {w['status']} after {timeout}s")
            await _sleep(poll_s)
