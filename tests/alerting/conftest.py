"""One real Prometheus + Alertmanager (with local receivers) shared by the package (stack.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.alerting.stack import Stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[Stack]:
    pytest.importorskip("aiosmtpd", reason="aiosmtpd (the SMTP sink) is in the test extra")
    s = Stack(tmp_path_factory.mktemp("alerting"))
    try:
        yield s.start()
    finally:
        s.stop()
