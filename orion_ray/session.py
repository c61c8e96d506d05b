"""One HTTP session with Orion's REST API, shared by the SDK clients and the CLI's command groups.

It holds what every caller needs and nothing more: the URL and key (explicit, else
``ORION_URL``/``ORION_API_KEY``, else ``~/.orion/credentials``), retries on 429/503 honouring
``Retry-After`` and on connection errors, and Orion's error body mapped to the typed error tree.
``OrionClient`` builds the workload API on it; ``ServingClient`` and the capacity CLI build theirs
on it too, so none of them imports another's module.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import httpx

from . import credentials
from .errors import ERRORS_BY_CODE, OrionError, SchedulerUnavailable


class ApiSession:
    """``ApiSession(url, api_key)``: ``_request`` returns the response or raises an ``OrionError``.
    ``transport`` (an ``httpx.BaseTransport``) serves an in-process app in tests; ``sleep`` is how
    it waits between retries (``time.sleep``; a test records the waits)."""

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        transport: Optional[httpx.BaseTransport] = None,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        self.url, self.api_key = credentials.resolve(url, api_key)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self.max_retries = max_retries
        self._sleep = sleep

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                r = self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise SchedulerUnavailable(f"cannot reach Orion at {self.url}: {exc}") from None
                self._sleep(min(5.0, 0.2 * 2**attempt))
                continue
            if r.status_code in (429, 503) and attempt < self.max_retries:
                self._sleep(retry_after(r, attempt))
                continue
            if r.status_code >= 400:
                raise error_from(r)
            return r
        raise AssertionError("unreachable")


def retry_after(r: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying ``r``: its ``Retry-After`` (at most 30 s), else a backoff."""
    try:
        return min(30.0, float(r.headers.get("Retry-After", "")))
    except ValueError:
        return min(5.0, 0.2 * 2**attempt)


def error_from(r: httpx.Response) -> OrionError:
    """The typed error of an error answer: by its ``error.code``, else by its HTTP status."""
    try:
        err = r.json()["error"]
        code, message, details = err.get("code", ""), err.get("message", ""), err.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, details = "", r.text[:500], None
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        cls = next((c for c in ERRORS_BY_CODE.values() if c.status_code == r.status_code), OrionError)
    exc = cls(message or f"HTTP {r.status_code}", details)
    exc.http_status = r.status_code
    return exc
