"""API keys: only their SHA-256 hashes reach the cluster; a key is an admin key or a tenant's key."""

from __future__ import annotations

import hashlib
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

    def admin_hashes(self) -> list[str]:
        return [h for h, p in self._by_hash.items() if p.is_admin]

    def tenant_hashes(self) -> dict[str, str]:
        return {h: p.tenant_id for h, p in self._by_hash.items() if not p.is_admin}

    def merged(self, admin_hashes: list[str], tenant_hashes: dict[str, str]) -> "KeyRing":
        """This ring plus more keys (the scheduler's current ones win for a tenant key)."""
        return KeyRing(self.admin_hashes() + list(admin_hashes), {**self.tenant_hashes(), **tenant_hashes})

    def by_hash(self, key_hash: str) -> Optional[Principal]:
        """The principal of a key's SHA-256 hash, or None."""
        return self._by_hash.get(key_hash)

    def authenticate(self, authorization: Optional[str]) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key (Authorization: Bearer <key>)")
        # a dict lookup on the digest: the digest of a guess says nothing about stored hashes
        principal = self._by_hash.get(hash_key(authorization[7:].strip()))
        if principal is None:
            raise Unauthorized("unknown API key")
        return principal
