"""Spot interruption notices → node drain.

EC2 warns a spot instance two minutes before it takes it back, through the instance metadata
service (``/latest/meta-data/spot/instance-action``: 404 until there is a notice). Where notices
come from is an interface (``NoticeSource``): the metadata service on the node, or anything that
pushes notices (EventBridge, a test). ``SpotInterruptionWatcher`` turns each notice into one call of
the ``drain(node_id, deadline)`` it is given — the autoscaler's drain (issue 6) in production.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import httpx

log = logging.getLogger("orion.autoscaler.spot")

IMDS_URL = "http://169.254.169.254"


@dataclass(frozen=True)
class InterruptionNotice:
    """One instance to be taken back: what EC2 will do and when."""

    node_id: str
    action: str  # terminate | stop | hibernate
    deadline: dt.datetime  # UTC


class NoticeSource(Protocol):
    def poll(self) -> Optional[InterruptionNotice]:
        """The pending notice, or None when there is none now."""


class FedNoticeSource:
    """Notices pushed in by someone else (an event bus consumer, or a test)."""

    def __init__(self) -> None:
        self._queue: collections.deque[InterruptionNotice] = collections.deque()
        self._lock = threading.Lock()

    def feed(self, notice: InterruptionNotice) -> None:
        with self._lock:
            self._queue.append(notice)

    def poll(self) -> Optional[InterruptionNotice]:
        with self._lock:
            return self._queue.popleft() if self._queue else None


def parse_instance_action(body: str, node_id: str) -> InterruptionNotice:
    """The metadata service's ``{"action": "terminate", "time": "2026-11-25T17:02:00Z"}``."""
    import json

    data = json.loads(body)
    when = dt.datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return InterruptionNotice(node_id, str(data.get("action", "terminate")), when)


class IMDSNoticeSource:
    """The notice of the instance this runs on, read from the metadata service (IMDSv2)."""

    def __init__(self, base_url: str = IMDS_URL, timeout_s: float = 1.0, http: Optional[httpx.Client] = None):
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_s)
        self._token: Optional[str] = None
        self._token_at = 0.0
        self._node_id: Optional[str] = None

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None or time.monotonic() - self._token_at > 240:  # token lives 300 s
            r = self._http.put("/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            r.raise_for_status()
            self._token, self._token_at = r.text, time.monotonic()
        return {"X-aws-ec2-metadata-token": self._token}

    def node_id(self) -> str:
        """This instance's id (what Ray's autoscaler v2 knows the node by)."""
        if self._node_id is None:
            r = self._http.get("/latest/meta-data/instance-id", headers=self._headers())
            r.raise_for_status()
            self._node_id = r.text.strip()
        return self._node_id

    def poll(self) -> Optional[InterruptionNotice]:
        r = self._http.get("/latest/meta-data/spot/instance-action", headers=self._headers())
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return parse_instance_action(r.text, self.node_id())


Drain = Callable[[str, dt.datetime], object]


class SpotInterruptionWatcher:
    """Polls a notice source and drains each noticed node once, before its deadline."""

    def __init__(
        self,
        source: NoticeSource,
        drain: Drain,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ):
        self.source = source
        self.drain = drain
        self.now = now
        self.drained: dict[str, dt.datetime] = {}

    def poll_once(self) -> Optional[InterruptionNotice]:
        """Read one notice and drain its node (once per node: the metadata service repeats the
        same notice on every read until the instance is gone). Returns the notice acted on."""
        notice = self.source.poll()
        if notice is None or notice.node_id in self.drained:
            return None
        if notice.deadline <= self.now():
            log.warning("spot notice for %s arrived past its deadline %s", notice.node_id, notice.deadline)
        self.drain(notice.node_id, notice.deadline)
        # recorded after the drain succeeded: a failed drain is tried again on the next notice
        self.drained[notice.node_id] = notice.deadline
        return notice

    def run(self, stop: threading.Event, interval_s: float = 5.0) -> None:
        """Poll until ``stop`` is set; a failing poll is logged and the loop goes on."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the metadata service may be briefly unreachable
                log.warning("spot notice poll failed: %s", exc)
            stop.wait(interval_s)
