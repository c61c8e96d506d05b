"""The first hop of a model's own OpenAI base URL (``/models/{model_id}/v1``): run inside the model's
replica, it checks the key, decides whether the caller's tenant sees the model, draws the release's
split and answers locally when the draw is this replica's own version; only the share that must go
elsewhere (a canary, an A/B variant, a shadow copy) is forwarded by handle.

No Ray or web framework here: the key check, the routing table and the forwarding are passed in,
so the gate is unit-tested with plain callables (``first_hop.py`` wires it to Serve).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence

from pydantic import ValidationError as PydanticValidationError

from serve_apps.llm.protocol import ChatRequest, CompletionRequest

from ..errors import OrionError, SchedulerUnavailable, Unauthorized
from .openai_routes import VERSION_HEADER
from .router import ModelRouter

KEY_TTL_S = 5.0  # a verified key is trusted this long (the revocation bound, with the API's 2 s)
NEGATIVE_TTL_S = 1.0  # an unknown key is refused from the cache this long
MAX_KEYS = 10_000

# a check run after the key and before the model is called (rate limits, a response cache…):
# ``await check(tenant_id, model_id, body)``; it raises an ``OrionError`` to refuse
Check = Callable[[Optional[str], str, dict], Awaitable[None]]


def key_hash(authorization: Optional[str]) -> str:
    """The SHA-256 of a bearer key (only hashes leave the replica); 401 without one."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing API key (Authorization: Bearer <key>)")
    return hashlib.sha256(authorization[7:].strip().encode()).hexdigest()


class KeyCache:
    """Verified keys, kept ``ttl_s``: a key is verified once (``verify(hash)`` → ``{"valid",
    "tenant_id"}``, ``tenant_id`` None for an admin) and then answered from memory. After half the
    TTL a request still passes on the cached answer while a fresh one is fetched in the
    background, so steady traffic never waits for the check; past the TTL the request waits.
    A revoked key is therefore refused at most ``ttl_s`` after the verifier learns of it."""

    def __init__(
        self,
        verify: Callable[[str], Awaitable[dict]],
        *,
        ttl_s: float = KEY_TTL_S,
        negative_ttl_s: float = NEGATIVE_TTL_S,
        max_entries: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.verify, self.ttl_s, self.negative_ttl_s = verify, ttl_s, negative_ttl_s
        self.max_entries, self.clock = max_entries, clock
        self._entries: dict[str, tuple[bool, Optional[str], float]] = {}
        self.limits: dict[str, Any] = {}  # tenant → its request rate (``RateLimit``), as verified
        self.serving_limits: dict[str, Any] = {}  # tenant → its serving limits (raw), as verified
        self.serving_limits_version = 0  # bumped when a verification changes them
        self._inflight: dict[str, asyncio.Future] = {}
        self.verifications = 0

    async def principal(self, authorization: Optional[str]) -> Optional[str]:
        """The caller's tenant (None: an admin key); 401 for a missing or unknown key, 503 when
        no verdict is at hand and the verifier cannot be reached."""
        h = key_hash(authorization)
        hit = self._entries.get(h)
        now = self.clock()
        if hit is not None:
            valid, tenant, at = hit
            age = now - at
            if valid and age <= self.ttl_s:
                if age > self.ttl_s / 2 and h not in self._inflight:
                    self._start(h).add_done_callback(_quiet)  # refresh ahead, answer now
                return tenant
            if not valid and age <= self.negative_ttl_s:
                raise Unauthorized("unknown API key")
        valid, tenant = await (self._inflight.get(h) or self._start(h))
        if not valid:
            raise Unauthorized("unknown API key")
        return tenant

    def _start(self, h: str) -> asyncio.Future:
        """One verification of ``h`` at a time, shared by every request that waits for it."""
        fut = asyncio.ensure_future(self._verify(h))
        self._inflight[h] = fut
        fut.add_done_callback(lambda _f: self._inflight.pop(h, None))
        return fut

    async def _verify(self, h: str) -> tuple[bool, Optional[str]]:
        self.verifications += 1
        try:
            got = await self.verify(h)
        except OrionError:
            raise
        except Exception as exc:  # the API is restarting: no verdict, never a guess
            raise SchedulerUnavailable(
                f"API keys cannot be checked right now ({type(exc).__name__})", retry_after=2
            ) from None
        valid, tenant = bool(got.get("valid")), got.get("tenant_id")
        if valid and tenant is not None and "rate_limit" in got:
            from ..config import RateLimit

            raw = got["rate_limit"]
            self.limits[tenant] = RateLimit.model_validate(raw) if raw else None
        if valid and tenant is not None and "serving_limits" in got:
            if self.serving_limits.get(tenant) != got["serving_limits"]:
                self.serving_limits[tenant] = got["serving_limits"]
                self.serving_limits_version += 1
        self._entries.pop(h, None)  # re-inserted last: the dict's order is the age order
        self._entries[h] = (valid, tenant, self.clock())
        while len(self._entries) > self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        return valid, tenant


def request_rate(keys: KeyCache, clock: Callable[[], float] = time.monotonic) -> Check:
    """The tenant's request rate, as on Orion's API (``api.rate_limit`` or the tenant's own, as
    ``orion-api`` reported it with the key): buckets in this replica, 429 with ``Retry-After``."""
    from ..rate_limit import RateLimiter

    limiter = RateLimiter(clock=clock)
    limiter.overrides = keys.limits  # shared: a re-verified key brings a changed limit

    async def check(tenant: Optional[str], model_id: str, body: dict) -> None:
        if tenant is not None:
            limiter.check(tenant)

    return check


def _quiet(fut: asyncio.Future) -> None:
    """A background refresh's failure is retried by the next request (never an unhandled error)."""
    if not fut.cancelled():
        fut.exception()


@dataclass
class Answer:
    """What the HTTP layer sends: a JSON body, or a stream of server-sent events."""

    status: int
    body: Optional[dict] = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Optional[AsyncIterator[bytes]] = None


def error_answer(exc: OrionError) -> Answer:
    """An ``OrionError`` in the contract's JSON shape (``Retry-After`` when it has one)."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(max(1, round(exc.retry_after))))
    body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details or []}}
    return Answer(exc.status_code, body, headers)


def _invalid(status: int, code: str, message: str, details: list) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message, "details": details}})


ROUTES = {"/v1/completions": "completion", "/v1/chat/completions": "chat", "/v1/models": "models"}


def route_of(path: str) -> Optional[str]:
    """``completion``, ``chat`` or ``models`` for a path under the base URL (whatever prefix
    the proxy leaves on it), else None."""
    path = path.rstrip("/")
    for suffix, kind in ROUTES.items():
        if path.endswith(suffix):
            return kind
    return None


class GateRouter(ModelRouter):
    """The router of a first hop: once it holds a routing table, a stale one is refreshed in the
    background while requests go on with it (so no request waits for the manager); a model
    deployed or released since is seen within about ``table_ttl_s``."""

    _refreshing: Optional[asyncio.Task] = None

    async def table(self) -> dict:
        if self._table is None:
            return await super().table()
        if self.clock() - self._table_at > self.table_ttl_s and (
            self._refreshing is None or self._refreshing.done()
        ):
            self._refreshing = asyncio.ensure_future(super().table())
            self._refreshing.add_done_callback(_quiet)
        return self._table


class FirstHop:
    """The gate of one model's base URL. ``router`` chooses versions and calls them (its
    ``handle_of`` gives this replica itself for its own version); ``checks`` run in order after
    the key (``Check``)."""

    def __init__(
        self,
        model_id: str,
        router: ModelRouter,
        keys: KeyCache,
        checks: Sequence[Check] = (),
        *,
        usage: Optional[Callable[[Optional[str], str, dict], Any]] = None,
    ):
        self.model_id, self.router, self.keys = model_id, router, keys
        self.checks = list(checks)
        # ``usage(tenant, model, body)`` admits a request against the tenant's serving limits
        # (raises to refuse) and gives its accounting: ``done(version, usage)``, ``close()``
        self.usage = usage

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """One request (``headers`` with lower-case names)."""
        kind = route_of(path)
        if kind is None:
            return _invalid(404, "not_found", f"no route {path[:200]} (try …/v1/chat/completions)", [])
        if method != ("GET" if kind == "models" else "POST"):
            return _invalid(405, "method_not_allowed", f"{method[:16]} is not allowed on {path[:200]}", [])
        try:
            tenant = await self.keys.principal(headers.get("authorization"))
            if kind == "models":
                return Answer(200, await self._models(tenant))
            data = _parse(kind, body, self.model_id)
            if isinstance(data, Answer):
                return data
            await self.router.entry(self.model_id, tenant)  # 404 before any check counts it
            for check in self.checks:
                await check(tenant, self.model_id, data)
            acct = self.usage(tenant, self.model_id, data) if self.usage is not None else None
            on_usage = acct.done if acct is not None else None
            if data.get("stream"):
                try:
                    events, version = await self.router.stream(kind, data, tenant, headers, on_usage=on_usage)
                except BaseException:
                    if acct is not None:
                        acct.close()
                    raise
                return Answer(200, None, {VERSION_HEADER: version}, _closing(events, acct))
            try:
                result, version = await self.router.complete(kind, data, tenant, headers, on_usage=on_usage)
            finally:
                if acct is not None:
                    acct.close()
            return Answer(200, result, {VERSION_HEADER: version})
        except OrionError as exc:
            return error_answer(exc)

    async def _models(self, tenant: Optional[str]) -> dict:
        """``GET …/v1/models``: this base URL's one model, as ``/v1/models`` lists it."""
        e = await self.router.entry(self.model_id, tenant)
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": e.get("tenant_id") or "shared",
                    "versions": sorted(e["versions"]),
                }
            ],
        }


async def _closing(events: AsyncIterator[bytes], acct: Any) -> AsyncIterator[bytes]:
    """A stream that settles its accounting when it ends (or the client goes away)."""
    try:
        async for chunk in events:
            yield chunk
    finally:
        if acct is not None:
            acct.close()


def _parse(kind: str, raw: bytes, model_id: str) -> Any:
    """The validated body as the router takes it, or the 400/422 ``Answer``. The URL names the
    model: a ``model`` in the body is ignored (OpenAI SDKs always send one)."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        return _invalid(
            400,
            "malformed_json",
            "the request body is not valid JSON",
            [{"field": "body", "problem": str(exc)[:200]}],
        )
    if not isinstance(data, dict):
        return _invalid(
            422,
            "validation_error",
            "invalid request",
            [{"field": "body", "problem": "expected a JSON object"}],
        )
    data["model"] = model_id
    try:
        req = (ChatRequest if kind == "chat" else CompletionRequest).model_validate(data)
    except PydanticValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return _invalid(422, "validation_error", "invalid request", details)
    out = req.model_dump(mode="json", exclude_unset=True)
    out["model"] = model_id
    return out
