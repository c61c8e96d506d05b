"""How a node output kept in the artifact store is written in the store's node row: a reference
``{"$orion_artifact": "<uri>", "bytes": n, "sha256": "<hex>"}`` in place of the value. Pure.

Only Orion writes references (``dataflow.externalize``): a node whose function returns a value
that looks like one is refused, so a reference in a node row always names an artifact Orion made
for that run.
"""

from __future__ import annotations

from typing import Any, Optional

MARKER = "$orion_artifact"


def is_ref(value: Any) -> bool:
    """Whether ``value`` is an artifact reference (or a tenant's value posing as one)."""
    return isinstance(value, dict) and MARKER in value


def make_ref(uri: str, size: int, sha256: str) -> dict[str, Any]:
    """The reference stored for an output written to ``uri``."""
    return {MARKER: uri, "bytes": size, "sha256": sha256}


def uri_of(value: Any) -> Optional[str]:
    """The URI of a reference, else None."""
    return str(value[MARKER]) if is_ref(value) else None


def artifact_uris(outputs: Optional[dict[str, Any]]) -> dict[str, str]:
    """``{out: uri}`` for the outputs of a node kept as artifacts (status shows them)."""
    return {k: str(v[MARKER]) for k, v in (outputs or {}).items() if is_ref(v)}
