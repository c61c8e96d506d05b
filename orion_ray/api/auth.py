"""API keys: only their SHA-256 hashes reach the cluster; a key is an admin key or a tenant's key."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Optional

from ..errors import Unauthorized


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str = "orion") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin (``tenant_id`` None) or one tenant."""
    tenant_id: Optional[str]

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


class KeyRing:
    """Maps key hashes to principals."""

    def __init__(self, admin_hashes: list[str], tenant_hashes: Optional[dict[str, str]] = None):
        self._by_hash: dict[str, Principal] = {h: Principal(None) for h in admin_hashes}
        for h, tenant in (tenant_hashes or {}).items():
            self._by_hash[h] = Principal(tenant)

    def authenticate(self, authorization: Optional[str]) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key (Authorization: Bearer <key>)")
        digest = hash_key(authorization[7:].strip())
        for h, principal in self._by_hash.items():
            if hmac.compare_digest(h, digest):
                return principal
        raise Unauthorized("unknown API key")
