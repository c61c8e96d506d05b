"""The traffic router, inside Orion's ingress: it picks a model's version by the release policy and
calls that version's replicas through a Serve handle — no extra deployment hop.

It keeps a circuit breaker per version and a response cache for temperature-0 requests, and
reports every outcome to the deployment manager, which judges canaries and rolls them back.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, AsyncIterator, Callable, Optional

from serve_apps.llm.engines.base import PromptTooLong

from ..errors import NotFound, OrionError, SchedulerUnavailable, ValidationError
from ..policy import traffic
from ..policy.resilience import Breaker
from ..policy.serving_limits import estimate_tokens
from ..serving_specs import ReleaseSpec
from .caching import ModelCaches

UsageHook = Callable[[Optional[str], Optional[dict]], None]
USAGE_OBJECT = "orion.usage"  # the replica's last stream item: the answer's token counts


class ModelError(OrionError):
    """The model's replica failed to answer."""

    status_code = 502
    code = "model_error"


class ModelRouter:
    """``source``: the manager (``call("routing_table")``, ``report_nowait(samples)``);
    ``handle_of(app)``: a Serve deployment handle of a version's application."""

    def __init__(
        self,
        source: Any,
        handle_of: Callable[[str], Any],
        *,
        table_ttl_s: float = 1.0,
        report_every_s: float = 0.5,
        cache: Optional[ModelCaches] = None,
        breaker: Breaker = Breaker(),
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ):
        self.source, self.handle_of = source, handle_of
        self.table_ttl_s, self.report_every_s = table_ttl_s, report_every_s
        self.cache = cache if cache is not None else ModelCaches()
        self.breaker_proto = breaker
        self.clock, self.rand = clock, rand
        self._table: Optional[dict] = None
        self._table_at = -1e18
        self._specs: dict[int, tuple[dict, ReleaseSpec]] = {}
        self._handles: dict[str, Any] = {}
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self._pending: list[tuple[str, str, bool, float]] = []
        self._usage: list[tuple[str, str, str, int, int]] = []
        self._flusher: Optional[asyncio.Task] = None
        self.shadow_tasks: set[asyncio.Task] = set()

    # -- the routing table ---------------------------------------------------------------------
    async def table(self) -> dict:
        """The manager's routing table, refreshed every ``table_ttl_s`` (the last one is kept
        while the manager is unreachable)."""
        if self.clock() - self._table_at > self.table_ttl_s:
            try:
                self._table = await self.source.call("routing_table")
                self._table_at = self.clock()
            except Exception:
                if self._table is None:
                    raise SchedulerUnavailable("model serving is not reachable", retry_after=2) from None
        return self._table or {}

    def refresh(self) -> None:
        """Read the table again on the next request (after a deploy or a release change)."""
        self._table_at = -1e18

    def replicas_of(self, model_id: str, app: str) -> Optional[int]:
        """Running replicas of the version that ``app`` serves, as of the routing table held
        now (no wait); None when it does not say."""
        e = (self._table or {}).get(model_id) or {}
        for version, a in e.get("versions", {}).items():
            if a == app:
                n = e.get("replicas", {}).get(version)
                return int(n) if isinstance(n, int) else None
        return None

    @staticmethod
    def visible(entry: dict, tenant: Optional[str]) -> bool:
        """A model is seen by admins, its owner, and everyone when it is shared."""
        return tenant is None or entry.get("tenant_id") in (None, tenant)

    async def models(self, tenant: Optional[str]) -> dict[str, dict]:
        return {m: e for m, e in (await self.table()).items() if self.visible(e, tenant)}

    async def entry(self, model_id: str, tenant: Optional[str]) -> dict:
        e = (await self.table()).get(model_id)
        if e is None or not self.visible(e, tenant):
            raise NotFound(f"no model {model_id!r}")  # another tenant's model does not exist
        return e

    def _spec(self, entry: dict) -> Optional[ReleaseSpec]:
        """The entry's release, parsed once per routing table (keyed by the dict's identity,
        which holds until the table is read again)."""
        raw = entry.get("release")
        if raw is None:
            return None
        hit = self._specs.get(id(raw))
        if hit is None or hit[0] is not raw:
            if len(self._specs) > 256:  # releases of old tables
                self._specs.clear()
            hit = self._specs[id(raw)] = (raw, ReleaseSpec.model_validate(raw))
        return hit[1]

    # -- choosing a version --------------------------------------------------------------------
    def choose(self, model_id: str, entry: dict, headers: dict[str, str]) -> str:
        """The version for this request: the release's weights (sticky for A/B), leaving out
        versions whose breaker is open; 503 when every version with traffic is cut off."""
        now = self.clock()
        allowed = [v for v in entry["versions"] if self._breaker(model_id, v).allows(now)]
        spec = self._spec(entry)
        if spec is None:
            version = traffic.pick(entry["weights"], self.rand(), allowed)
        else:
            header = traffic.sticky_header(spec)
            state = traffic.ReleaseState(traffic.STEADY, entry["weights"])
            version = traffic.route(
                spec, state, self.rand(), headers.get(header) if header else None, allowed
            )
        if version is None:
            raise SchedulerUnavailable(
                f"every version of {model_id} is failing (circuit open)", retry_after=2
            )
        return version

    def _admit(self, model_id: str, version: str) -> None:
        """A request is about to reach the version (a half-open breaker's probe slot is taken
        here, and given back by the outcome, so a cache hit never holds one)."""
        self.breakers[(model_id, version)] = self._breaker(model_id, version).admit(self.clock())

    def _breaker(self, model_id: str, version: str) -> Breaker:
        return self.breakers.get((model_id, version), self.breaker_proto)

    def _outcome(self, model_id: str, version: str, ok: bool, latency: float, shadow: bool = False) -> None:
        if not shadow:
            self.breakers[(model_id, version)] = self._breaker(model_id, version).record(ok, self.clock())
        self._pending.append((model_id, version, ok, latency))
        if self.report_every_s <= 0:
            self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.report_every_s)
        self.flush()

    def flush(self) -> None:
        """Send the outcomes (and the token usage) gathered so far to the manager."""
        batch, self._pending = self._pending, []
        if batch:
            self.source.report_nowait(batch)
        used, self._usage = self._usage, []
        if used and hasattr(self.source, "usage_nowait"):
            self.source.usage_nowait(used)

    def usage(self, tenant: str, model_id: str, version: str, prompt: int, completion: int) -> None:
        """Tokens of one answer for ``tenant``, sent to the manager with the next report (its
        serving usage records: docs/serving-limits.md)."""
        self._usage.append((tenant, model_id, version, int(prompt), int(completion)))
        if self.report_every_s <= 0:
            self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    def _handle(self, app: str):
        if app not in self._handles:
            self._handles[app] = self.handle_of(app)
        return self._handles[app]

    # -- requests ------------------------------------------------------------------------------
    async def complete(
        self,
        kind: str,
        body: dict,
        tenant: Optional[str],
        headers: dict[str, str],
        on_usage: Optional[UsageHook] = None,
    ) -> tuple[dict, str]:
        """A whole answer and the version that gave it; ``on_usage(version, usage)`` when the
        model answered (not for a cached answer)."""
        model_id = body["model"]
        entry = await self.entry(model_id, tenant)
        version = self.choose(model_id, entry, headers)
        cache, key, cached = self.cache.lookup(
            entry, kind=kind, body=body, model_id=model_id, version=version, tenant=tenant
        )
        if cached is not None:
            return cached, version
        self._maybe_shadow(kind, body, model_id, entry)
        result = await self._call(kind, body, model_id, version, entry["versions"][version])
        if on_usage is not None:
            on_usage(version, result.get("usage") if isinstance(result, dict) else None)
        if cache is not None:
            cache.put(key, result)
        return result, version

    async def _call(
        self, kind: str, body: dict, model_id: str, version: str, app: str, shadow: bool = False
    ) -> dict:
        if not shadow:
            self._admit(model_id, version)
        t0 = self.clock()
        try:
            result = await self._handle(app).complete.remote(kind, body)
        except PromptTooLong as exc:  # the caller's input: the version answered as it should
            self._outcome(model_id, version, True, self.clock() - t0, shadow)
            raise ValidationError(
                "the prompt does not fit the model", [{"field": "max_tokens", "problem": str(exc)}]
            ) from None
        except Exception as exc:
            self._outcome(model_id, version, False, self.clock() - t0, shadow)
            raise ModelError(
                f"{model_id} {version} failed: {type(exc).__name__}: "
                f"{str(exc).splitlines()[-1][:300] if str(exc) else ''}"
            ) from None
        self._outcome(model_id, version, True, self.clock() - t0, shadow)
        return result

    def _maybe_shadow(self, kind: str, body: dict, model_id: str, entry: dict) -> None:
        spec = self._spec(entry)
        target = traffic.shadow_target(spec, self.rand()) if spec else None
        if target is None or target not in entry["versions"]:
            return

        async def mirror():
            try:
                await self._call(kind, body, model_id, target, entry["versions"][target], True)
            except OrionError:
                pass  # a shadow's failure is recorded in its metrics, never seen by the caller

        task = asyncio.get_running_loop().create_task(mirror())
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)

    async def stream(
        self,
        kind: str,
        body: dict,
        tenant: Optional[str],
        headers: dict[str, str],
        on_usage: Optional[UsageHook] = None,
    ) -> tuple[AsyncIterator[bytes], str]:
        """Server-sent events of an answer, and the version that gives it; ``on_usage(version,
        usage)`` once the stream ends (``usage`` None when the replica sent none)."""
        model_id = body["model"]
        entry = await self.entry(model_id, tenant)
        version = self.choose(model_id, entry, headers)
        app = entry["versions"][version]
        self._admit(model_id, version)
        gen = self._handle(app).options(stream=True).stream.remote(kind, body)

        async def events() -> AsyncIterator[bytes]:
            t0, ok, usage, pieces = self.clock(), False, None, 0
            try:
                async for chunk in gen:
                    if chunk.get("object") == USAGE_OBJECT:  # the replica's accounting, not the client's
                        usage = chunk.get("usage")
                        continue
                    pieces += 1
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                ok = True
                if usage is None:  # an engine that does not count: estimate (a piece is about a token)
                    usage = {"prompt_tokens": estimate_tokens(body), "completion_tokens": pieces}
            except Exception as exc:  # headers are sent: the error travels as an event
                err = {"error": {"code": "model_error", "message": f"{type(exc).__name__}"}}
                yield b"data: " + json.dumps(err).encode() + b"\n\n"
            finally:
                self._outcome(model_id, version, ok, self.clock() - t0)
                if on_usage is not None:
                    on_usage(version, usage)
            yield b"data: [DONE]\n\n"

        return events(), version
