"""Prometheus' and Alertmanager's binaries (Debian's ``prometheus`` and ``prometheus-alertmanager``)
for the alerting tests: skipped with the reason where missing, failed under
``ORION_REQUIRE_ALERTING=1`` (``.ci/run`` installs them and sets it)."""

from __future__ import annotations

import os
import shutil

import pytest

# Debian names Alertmanager's server prometheus-alertmanager; upstream's tarball, alertmanager
NAMES = {
    "promtool": ("promtool",),
    "amtool": ("amtool",),
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
}


def require_tool(tool: str) -> str:
    """The path of ``tool``, else skip (or fail under ``ORION_REQUIRE_ALERTING``)."""
    for name in NAMES[tool]:
        path = shutil.which(name)
        if path:
            return path
    reason = f"{tool} is not installed (apt-get install prometheus prometheus-alertmanager)"
    if os.environ.get("ORION_REQUIRE_ALERTING"):
        pytest.fail(reason)
    pytest.skip(reason)
