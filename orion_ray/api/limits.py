"""Request body size limit (413), enforced on the declared length and on the bytes actually read."""

from __future__ import annotations

import json

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
