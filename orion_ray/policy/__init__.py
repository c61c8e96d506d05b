"""Pure scheduling policy: functions over a snapshot, no ray/boto3/kubernetes/fastapi imports.

The live scheduler, the simulator and the benchmarks call this same code.
"""

from .backoff import retry_delay
from .fit import NodeView, fit_gang

__all__ = ["retry_delay", "NodeView", "fit_gang"]
