"""The SDK's schedule, trigger and event calls (docs/pipelines-schedules.md), mixed into
``OrionClient`` (``ScheduleCalls``) and ``AsyncOrionClient`` (``AsyncScheduleCalls``): the same
methods with the same parameters, the async ones awaited. ``tenant_id`` is for an admin key (a
tenant key acts for its own tenant)."""

from __future__ import annotations

from typing import Any, Callable, Optional


def _params(tenant_id: Optional[str], **more: Any) -> dict[str, Any]:
    return {k: v for k, v in {"tenant_id": tenant_id, **more}.items() if v is not None}


class ScheduleCalls:
    """Schedules (cron), triggers (events) and events, over REST."""

    _request: Callable[..., Any]  # the client's (ApiSession's)

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._request(method, path, **kw).json()
        return out

    def create_schedule(self, spec: dict[str, Any], tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Create a schedule: ``{name, cron, timezone, concurrency_policy,
        starting_deadline_seconds, catch_up, paused, submission: {dag_spec, runtime_params, refs}}``."""
        return self._json("POST", "/api/orch/schedules", json=spec, params=_params(tenant_id))

    def list_schedules(
        self, tenant_id: Optional[str] = None, limit: int = 100, cursor: Optional[int] = None
    ) -> dict[str, Any]:
        """Schedules, oldest first: ``{"items", "next_cursor"}``."""
        params = _params(tenant_id, limit=limit, cursor=cursor)
        return self._json("GET", "/api/orch/schedules", params=params)

    def get_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """One schedule with its last and next slot, last run and counters."""
        return self._json("GET", f"/api/orch/schedules/{name}", params=_params(tenant_id))

    def pause_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """No slot fires until it is resumed."""
        return self._json("POST", f"/api/orch/schedules/{name}/pause", params=_params(tenant_id))

    def resume_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Fire again from now on (the paused slots are passed over)."""
        return self._json("POST", f"/api/orch/schedules/{name}/resume", params=_params(tenant_id))

    def delete_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Delete a schedule (the runs it fired stay)."""
        return self._json("DELETE", f"/api/orch/schedules/{name}", params=_params(tenant_id))

    def backfill_schedule(
        self, name: str, start: Any, end: Any, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """A run for every slot in ``[start, end]`` (ISO 8601 or epoch seconds), idempotent."""
        body = {"start": start, "end": end}
        path = f"/api/orch/schedules/{name}/backfill"
        return self._json("POST", path, json=body, params=_params(tenant_id))

    def create_trigger(self, spec: dict[str, Any], tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Create a trigger: ``{name, event_type, match_labels, paused, submission}``."""
        return self._json("POST", "/api/orch/triggers", json=spec, params=_params(tenant_id))

    def list_triggers(
        self, tenant_id: Optional[str] = None, limit: int = 100, cursor: Optional[int] = None
    ) -> dict[str, Any]:
        """Triggers, oldest first: ``{"items", "next_cursor"}``."""
        params = _params(tenant_id, limit=limit, cursor=cursor)
        return self._json("GET", "/api/orch/triggers", params=params)

    def delete_trigger(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Delete a trigger."""
        return self._json("DELETE", f"/api/orch/triggers/{name}", params=_params(tenant_id))

    def post_event(
        self, type: str, labels: Optional[dict[str, Any]] = None, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """Post an event; the matching triggers fire: ``{event_id, type, fired: [...]}``."""
        body = {"type": type, "labels": labels or {}}
        return self._json("POST", "/api/orch/events", json=body, params=_params(tenant_id))


class AsyncScheduleCalls:
    """``ScheduleCalls`` for ``AsyncOrionClient``."""

    _request: Callable[..., Any]  # the client's coroutine

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = (await self._request(method, path, **kw)).json()
        return out

    async def create_schedule(self, spec: dict[str, Any], tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Create a schedule (see ``ScheduleCalls.create_schedule``)."""
        return await self._json("POST", "/api/orch/schedules", json=spec, params=_params(tenant_id))

    async def list_schedules(
        self, tenant_id: Optional[str] = None, limit: int = 100, cursor: Optional[int] = None
    ) -> dict[str, Any]:
        """Schedules, oldest first."""
        params = _params(tenant_id, limit=limit, cursor=cursor)
        return await self._json("GET", "/api/orch/schedules", params=params)

    async def get_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """One schedule."""
        return await self._json("GET", f"/api/orch/schedules/{name}", params=_params(tenant_id))

    async def pause_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Pause a schedule."""
        path = f"/api/orch/schedules/{name}/pause"
        return await self._json("POST", path, params=_params(tenant_id))

    async def resume_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Resume a schedule."""
        path = f"/api/orch/schedules/{name}/resume"
        return await self._json("POST", path, params=_params(tenant_id))

    async def delete_schedule(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Delete a schedule."""
        path = f"/api/orch/schedules/{name}"
        return await self._json("DELETE", path, params=_params(tenant_id))

    async def backfill_schedule(
        self, name: str, start: Any, end: Any, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """A run for every slot in ``[start, end]``, idempotent."""
        body = {"start": start, "end": end}
        path = f"/api/orch/schedules/{name}/backfill"
        return await self._json("POST", path, json=body, params=_params(tenant_id))

    async def create_trigger(self, spec: dict[str, Any], tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Create a trigger."""
        return await self._json("POST", "/api/orch/triggers", json=spec, params=_params(tenant_id))

    async def list_triggers(
        self, tenant_id: Optional[str] = None, limit: int = 100, cursor: Optional[int] = None
    ) -> dict[str, Any]:
        """Triggers, oldest first."""
        params = _params(tenant_id, limit=limit, cursor=cursor)
        return await self._json("GET", "/api/orch/triggers", params=params)

    async def delete_trigger(self, name: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Delete a trigger."""
        path = f"/api/orch/triggers/{name}"
        return await self._json("DELETE", path, params=_params(tenant_id))

    async def post_event(
        self, type: str, labels: Optional[dict[str, Any]] = None, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """Post an event; the matching triggers fire."""
        body = {"type": type, "labels": labels or {}}
        return await self._json("POST", "/api/orch/events", json=body, params=_params(tenant_id))
