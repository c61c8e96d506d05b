"""Live updates for the console: one store poll per API replica, pushed to every open stream.

A browser tab opens ``GET /api/v1/stream`` (server-sent events) and refreshes a view when told
to, instead of polling every route every second. The feed reads the store once per interval for
all streams together: which tenants' workloads changed (transition ids, an index range), and
sends ``event: workloads`` to the streams that may see them (the tenant's own, and the admin's).
Views that show the cluster (nodes, pools, releases) refresh on ``event: tick`` every few
seconds. Without store access on this replica, every tick also says ``workloads``.

Streams are bounded: a few per tenant and a fixed number per replica (429 beyond), each with a
small queue that drops events a slow reader has not taken (the next event refreshes anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

from ..errors import RateLimited

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream


@dataclass(eq=False)
class _Stream:
    scope: Optional[str]  # the tenant it may see; None for the admin
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=8))

    def put(self, event: str, data: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:  # a slow reader: it refreshes on the next event it takes
            pass


class ChangeFeed:
    """The replica's change feed. ``store()`` returns the replica's store access (or None);
    it is read on the event loop, as the replica's other reads are (a short indexed query)."""

    def __init__(
        self,
        store: Callable[[], Any],
        *,
        interval_s: float = 1.0,
        tick_s: float = 5.0,
        max_streams: int = 64,
        max_per_tenant: int = 8,
        clock: Callable[[], float] = time.monotonic,
        run_loop: bool = True,
    ):
        self.store = store
        self.interval_s, self.tick_s = interval_s, tick_s
        self.max_streams, self.max_per_tenant = max_streams, max_per_tenant
        self.clock = clock
        self.run_loop = run_loop  # False: the caller polls (tests drive poll_once)
        self.streams: set[_Stream] = set()
        self.cursor: Optional[int] = None
        self._task: Optional[asyncio.Task] = None
        self._last_tick = 0.0
        self._last_error: Optional[type] = None

    # -- the poll ---------------------------------------------------------------------------------
    def poll_once(self) -> None:
        """One look at the store (and the tick clock): queue the events each stream may see."""
        changed: dict[str, int] = {}
        reader = getattr(self.store(), "reader", None)
        try:
            if reader is not None:
                if self.cursor is None:
                    self.cursor = reader.last_transition_id()
                else:
                    changed = reader.transitions_since(self.cursor)
                    if changed:
                        self.cursor = max(changed.values())
        except Exception as exc:  # a locked or missing store: the ticks go on, health reports it
            if type(exc) is not self._last_error:  # once per kind of failure, not every second
                log.warning("change feed: store not readable", exc_info=True)
            self._last_error = type(exc)
        else:
            self._last_error = None
        now = self.clock()
        tick = now - self._last_tick >= self.tick_s
        if tick:
            self._last_tick = now
        for s in list(self.streams):
            seen = changed if s.scope is None else {k: v for k, v in changed.items() if k == s.scope}
            if seen:
                s.put("workloads", {"seq": max(seen.values())})
            elif tick and reader is None:  # no store here: refresh workloads on the tick
                s.put("workloads", {"seq": None})
            if tick:
                s.put("tick", {"at": round(time.time(), 3)})

    async def _run(self) -> None:
        while self.streams:
            try:
                self.poll_once()
            except Exception:  # never let the feed die while streams wait on it
                log.warning("change feed poll failed", exc_info=True)
            await asyncio.sleep(self.interval_s)
        self._task = None

    # -- streams ----------------------------------------------------------------------------------
    def open(self, scope: Optional[str]) -> _Stream:
        """Register a stream for ``scope`` (429 ``rate_limited`` over the bounds)."""
        if len(self.streams) >= self.max_streams:
            raise RateLimited("too many open console streams on this replica", retry_after=10)
        if scope is not None and sum(1 for s in self.streams if s.scope == scope) >= self.max_per_tenant:
            raise RateLimited(
                f"tenant {scope!r} has {self.max_per_tenant} console streams open already", retry_after=10
            )
        s = _Stream(scope)
        self.streams.add(s)
        if self._task is None and self.run_loop:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return s

    def close(self, s: _Stream) -> None:
        """Unregister ``s`` (the poll stops with the last stream)."""
        self.streams.discard(s)

    async def events(self, s: _Stream, is_disconnected: Callable[[], Any]) -> AsyncIterator[bytes]:
        """The stream's bytes: ``hello``, then events as they come, a keep-alive comment when
        idle; ends (and unregisters) when the client goes."""
        try:
            yield b"retry: 3000\n\n"
            yield _sse("hello", {"scope": s.scope, "tick_s": self.tick_s})
            while True:
                try:
                    event, data = await asyncio.wait_for(s.queue.get(), timeout=KEEPALIVE_S)
                except asyncio.TimeoutError:
                    if await is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                yield _sse(event, data)
        finally:
            self.close(s)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
