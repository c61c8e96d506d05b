"""The tenants the scheduler serves and the hashes of the keys that act for them.

The running configuration is durable (the store's ``settings``), validated before it replaces the
previous one, and versioned so API replicas can tell when to refresh their key ring.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from ..config import TenantConfig
from ..errors import ValidationError, pydantic_details

DEFAULT_TENANT = "default"
_TENANTS = TypeAdapter(list[TenantConfig])


class TenantRegistry:
    def __init__(self, store):
        self.store = store
        saved = store.get_setting("tenants", {}) or {}
        self.version: int = saved.get("version", 0)
        self.tenants: dict[str, TenantConfig] = {
            t.id: t for t in _TENANTS.validate_python(saved.get("tenants", []))
        }
        self.keys: dict[str, str] = dict(saved.get("keys", {}))  # sha256 → tenant id
        self.admins: list[str] = list(saved.get("admins", []))  # sha256 of admin keys

    def configure(
        self, tenants: list[dict[str, Any]], keys: dict[str, str], admins: Optional[list[str]] = None
    ) -> dict[str, Any]:
        """Validate, then replace the running configuration (all or nothing) and persist it."""
        try:
            parsed = _TENANTS.validate_python(tenants)
        except PydanticValidationError as exc:
            raise ValidationError(
                "invalid tenants configuration",
                [{"field": "tenants." + d["field"], "problem": d["problem"]} for d in pydantic_details(exc)],
            ) from None
        ids = [t.id for t in parsed]
        if len(set(ids)) != len(ids):
            raise ValidationError("duplicate tenant ids", [{"field": "tenants", "problem": "duplicate id"}])
        unknown = sorted({t for t in keys.values() if t not in ids})
        if unknown:
            raise ValidationError(
                "keys for unknown tenants",
                [{"field": "keys", "problem": f"no tenant {t!r}"} for t in unknown],
            )
        for h in [*keys, *(admins or [])]:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValidationError(
                    "key hashes must be hex SHA-256",
                    [{"field": "keys", "problem": "not a SHA-256 hex digest"}],
                )
        self.tenants = {t.id: t for t in parsed}
        self.keys = dict(keys)
        if admins is not None:
            self.admins = list(admins)
        self.version += 1
        self.store.put_setting(
            "tenants",
            {
                "version": self.version,
                "keys": self.keys,
                "admins": self.admins,
                "tenants": [t.model_dump(mode="json", exclude={"api_key_sha256"}) for t in parsed],
            },
        )
        return self.summary()

    def keyring(self) -> dict[str, Any]:
        """What an API replica refreshes: the key hashes, and the tenants' own request rates."""
        rates = {t.id: t.rate_limit.model_dump() for t in self.tenants.values() if t.rate_limit is not None}
        serving = {
            t.id: t.serving_limits.model_dump(exclude_none=True)
            for t in self.tenants.values()
            if t.serving_limits is not None
        }
        return {
            "version": self.version,
            "keys": self.keys,
            "admins": self.admins,
            "rate_limits": rates,
            "serving_limits": serving,  # docs/serving-limits.md
        }

    def known(self, tenant_id: str) -> bool:
        return tenant_id == DEFAULT_TENANT or not self.tenants or tenant_id in self.tenants

    def get(self, tenant_id: str) -> Optional[TenantConfig]:
        return self.tenants.get(tenant_id)

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tenants": sorted(self.tenants),
            "keys": len(self.keys),
            "admin_keys": len(self.admins),
        }
