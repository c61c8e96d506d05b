"""A draining region refuses new dispatches from its control plane (docs/regions.md).

The region agent records the state the control plane answers its heartbeat with in the settings
row ``region_dispatch_state``; while it says ``draining`` (or ``inactive``) a submission carrying a
control-plane dispatch key (``request_id`` ``cp-<run>-g<generation>``) is answered 409, so the
control plane blocks this region and places the run elsewhere. Tenants' own submissions are not
affected: draining is about the control plane's placement.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..errors import Conflict
from ..names import REGION_GATE_SETTING

GATE = REGION_GATE_SETTING
_DISPATCH = re.compile(r"^cp-.+-g[0-9]+$")


def check_dispatch_allowed(access: Optional[Any], request_id: Optional[str]) -> None:
    """Raise 409 when ``request_id`` is a control-plane dispatch and this region is draining."""
    if access is None or not request_id or not _DISPATCH.match(request_id):
        return
    state = access.reader.get_setting(GATE)
    if isinstance(state, dict) and state.get("state") in ("draining", "inactive"):
        raise Conflict(
            f"this region is {state['state']}: it takes no new dispatches",
            [{"field": "metadata.request_id", "problem": f"region {state['state']}"}],
        )
