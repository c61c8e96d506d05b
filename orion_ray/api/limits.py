"""Request body limits: size (413), enforced on the declared length and on the bytes actually
read, and no ``NaN``/``Infinity`` anywhere in a JSON body (422)."""

from __future__ import annotations

import json
import math
from typing import Optional

from starlette.exceptions import HTTPException


class _BodyTooLarge(HTTPException):
    """An ``HTTPException`` because FastAPI re-raises those from a body read (any other error there
    becomes a 400); the app's handler answers it with the 413 ``payload_too_large`` body."""


class BodySizeLimit:
    """Pure ASGI middleware: refuse bodies over ``max_bytes`` before any parsing happens."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(413, f"request body over {self.max_bytes} bytes")
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:  # raised outside a route
            await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "details": [],
                    "message": f"request body over {self.max_bytes} bytes",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _NonFinite:
    """Where the JSON text had ``NaN``, ``Infinity`` or ``-Infinity`` (Python's reader accepts
    them; JSON has no such numbers)."""


def _finite_or_mark(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NonFinite()


def _first_non_finite(value, path: str = "") -> Optional[str]:
    """The path of the first ``_NonFinite`` in a parsed body (iterative: depth is bounded by the
    parser already), or None."""
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, _NonFinite):
            return p or "body"
        if isinstance(v, dict):
            stack.extend((item, f"{p}.{k}" if p else str(k)) for k, item in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((item, f"{p}.{i}" if p else str(i)) for i, item in reversed(list(enumerate(v))))
    return None


class StrictJsonNumbers:
    """Pure ASGI middleware: a JSON body holding ``NaN``/``Infinity`` anywhere is a 422 naming
    where, on every route. Without it such a number is parsed, then stored as ``null`` or kept
    as a float that no JSON answer can carry (a 500 on a later read). The body is read once,
    checked, and handed on unchanged (its size is bounded by ``BodySizeLimit`` outside)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
        if b"json" not in ctype.lower():
            return await self.app(scope, receive, send)
        chunks, more, last = [], True, None
        while more:
            last = await receive()
            if last["type"] != "http.request":
                break
            chunks.append(last.get("body", b""))
            more = last.get("more_body", False)
        body = b"".join(chunks)
        try:  # ``1e400`` parses as infinity too: every number is checked, not only the tokens
            parsed = json.loads(body, parse_constant=lambda _: _NonFinite(), parse_float=_finite_or_mark)
            where = _first_non_finite(parsed)
        except (ValueError, RecursionError):
            where = None  # not JSON (or too deep): the route's own parser answers 400
        if where is not None:
            return await _send_json(
                send,
                422,
                {
                    "error": {
                        "code": "validation_error",
                        "message": "invalid request",
                        "details": [
                            {
                                "field": where,
                                "problem": "NaN, Infinity and numbers beyond a float are not JSON numbers",
                            }
                        ],
                    }
                },
            )
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return last if last is not None and last["type"] != "http.request" else await receive()

        await self.app(scope, replay, send)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
