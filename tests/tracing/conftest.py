"""One live Orion (`orion up` in a subprocess, real Ray) with tracing on, its spans appended as
JSON lines to a file the tests read back; shared by every module of this package."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {"alice": "alice-tracing-key-0123456789"}


class Traced:
    """The running Orion and its spans file."""

    def __init__(self, url: str, admin: str, spans_path: Path):
        self.url, self.admin, self.spans_path = url, admin, spans_path

    def client(self, who: str = "alice") -> httpx.Client:
        key = self.admin if who == "admin" else KEYS[who]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def spans(self) -> list[dict[str, Any]]:
        """Every span exported so far (the API replica's and the scheduler's)."""
        if not self.spans_path.exists():
            return []
        return [json.loads(line) for line in self.spans_path.read_text().splitlines() if line.strip()]

    def wait_spans(self, predicate, within_s: float = 60) -> list[dict[str, Any]]:
        """The spans once ``predicate(spans)`` holds, or after ``within_s`` (a bound on waiting:
        a span is written when its status change is, a moment after a reader sees the row)."""
        end = time.monotonic() + within_s
        while True:
            got = self.spans()
            if predicate(got) or time.monotonic() > end:
                return got
            time.sleep(0.2)


@pytest.fixture(scope="package")
def traced(tmp_path_factory) -> Iterator[Traced]:
    home = tmp_path_factory.mktemp("orion-tracing")
    spans_path = home / "spans.jsonl"
    config = f"""\
orion:
  scheduler: {{pin_single_bundle_tasks: true}}
  tenants:
    - {{id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}}
  tracing: {{enabled: true, exporter: file, path: "{spans_path}", service_name: orion-live}}
  logging: {{format: json}}
"""
    with orion_up(home, config, KEYS) as (creds, _env, _ports):
        yield Traced(creds["url"], creds["api_key"], spans_path)
