"""Launching over time: repeat ``EC2Provider.launch`` passes with backoff until the pool's budget
runs out. This is the autoscaler's side of a launch (the provider makes one pass per call).

Capacity comes back: a zone blocklisted in one pass is tried again once its entry expires. Quota and
invalid-request errors are not retried here, since waiting does not fix them: they are reported.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from ..errors import CapacityError
from .providers.ec2 import EC2Provider, LaunchResult
from .providers.retry import LaunchBudget, backoff_delay
from .providers.taxonomy import InvalidLaunch, LaunchBudgetExceeded, QuotaExceeded


def launch_with_retries(
    provider: EC2Provider,
    pool_name: str,
    count: int,
    clock: Optional[Callable[[], float]] = None,
    sleep: Optional[Callable[[float], None]] = None,
    rand: Callable[[], float] = random.random,
    backoff_base_s: float = 5.0,
    backoff_cap_s: float = 120.0,
    extra_tags: Optional[dict[str, str]] = None,
) -> LaunchResult:
    """Passes over the pool's sources until one gang comes up or the budget is spent.

    Raises ``LaunchBudgetExceeded`` with every pass's history when the budget runs out, and
    ``QuotaExceeded``/``InvalidLaunch`` at once."""
    clock = clock or provider.clock
    sleep = sleep or provider.sleep
    pool = provider.pool(pool_name)
    budget = LaunchBudget(pool.launch_budget_s, clock)
    history: list[dict] = []
    n = 0
    while True:
        n += 1
        try:
            result = provider.launch(pool_name, count, budget=budget, extra_tags=extra_tags)
            result.history = history + result.history
            return result
        except (QuotaExceeded, InvalidLaunch) as exc:
            exc.history = history + [{"pass": n}] + exc.history
            raise
        except LaunchBudgetExceeded as exc:
            history += [{"pass": n}] + exc.history
            raise LaunchBudgetExceeded(exc.message, exc.details, exc.retry_after, history) from None
        except CapacityError as exc:
            history += [{"pass": n}] + exc.history
        # Wait for the first blocklisted zone to come back, but at least the jittered backoff.
        wait = max(
            backoff_delay(n, backoff_base_s, backoff_cap_s, rand),
            min(provider.blocklist.snapshot().values(), default=0.0),
        )
        if not budget.allows_wait(wait):
            raise LaunchBudgetExceeded(
                f"pool {pool_name!r}: launch budget of {pool.launch_budget_s:g}s spent after {n} passes",
                [
                    {
                        "field": "launch_budget_s",
                        "problem": f"{budget.elapsed():.0f}s used, next pass in {wait:.0f}s",
                    }
                ],
                retry_after=wait,
                history=history,
            )
        history.append({"outcome": "waiting", "wait_s": round(wait, 3)})
        sleep(wait)
