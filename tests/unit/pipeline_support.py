"""What the pipeline controller's unit tests share: a clock they move by hand."""

from __future__ import annotations

T0 = 1_000_000.0


class Clock:
    """A clock a test sets (``clock.now += 5``); starts at ``T0``."""

    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now
