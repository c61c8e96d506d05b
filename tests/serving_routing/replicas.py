"""A replica that answers with its own Serve replica id (what the routing tests observe)."""

from __future__ import annotations

import asyncio

from ray import serve


class WhoAmI:
    """Called like Orion's model replica, ``complete(kind, body)``; ``body["hold"]`` keeps the
    request in flight that many seconds (so queue lengths differ)."""

    async def complete(self, kind: str, body: dict) -> str:
        await asyncio.sleep(float(body.get("hold", 0)))
        return serve.get_replica_context().replica_id.unique_id
