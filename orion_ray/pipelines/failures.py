"""Why a node's attempt failed: the node's own fault (``user``) or the platform's (``system``),
and the run-level ``fail_fast`` option. Pure (no Ray, no store).

The rules read what the scheduler records on the attempt's workload (``Workload.status``,
``Workload.error``, ``Workload.attempt``); see docs/pipelines-operations.md:

- **user**: the node's function raised (``"<ExceptionType>: message"``), its entrypoint exited
  non-zero (``"job failed (exit code N): …"``), its result is not strict JSON or lacks an ``out``,
  it ran past its own ``timeout_s`` (``"timed out after …"``), an upstream value could not be
  passed to it — anything else not listed below.
- **system**: the run's worker or node died (Ray's ``WorkerCrashedError``, ``NodeDiedError``…,
  once the scheduler's own relaunches of the same workload were spent), Orion could not launch
  or drive it (``"orion error: …"``: placement, the Jobs agent…), the Ray job was stopped by
  something other than the pipeline (``"job stopped …"``), the task was cancelled under it
  (``TaskCancelledError``), its stored record could not be read back (``"quarantined: …"``), or
  its workload is gone from the store.
- Preemption, a lost node and a lost run do not end a workload: the scheduler queues it again
  as a new attempt of the same workload. Those restarts (``Workload.attempt - 1``) are counted as
  system failures of the node when its attempt ends, and cost the node nothing.
- A node's workload **cancelled** by a person (``DELETE /api/v1/workloads/{id}``) is neither: the
  node ends ``cancelled`` and is not retried, as before.

A user failure uses one of ``retry.max_attempts``; a system failure does not, and is retried
(after the same ``backoff_sec``) while the node has had at most ``retry.max_system_failures``
of them (default 3) since the run started or was last retried. A workload gone from the store
is a system failure that is not retried: it may have run, and its outcome is unknown.
"""

from __future__ import annotations

from typing import Any, Optional

from ..runtime.conventions import infrastructure_failure
from ..status import Status

USER, SYSTEM = "user", "system"
# Error texts (their start) the scheduler writes when the platform, not the node, failed.
_SYSTEM_PREFIXES = (
    "orion error:",  # the driver could not launch or follow the run
    "lost its worker or node",
    "run lost",
    "executor died",
    "quarantined",
    "job stopped",  # a Ray job stopped by something other than the pipeline's cancel
    "ray job lost",
    "taskcancellederror",  # the task was cancelled under the node, not by its code
)
GONE = "its workload is gone from the store"


def classify(w: Optional[Any]) -> str:  # a Workload or engine.WorkloadView
    """``user`` or ``system`` for an attempt whose workload ended ``failed`` (or is gone)."""
    if w is None:
        return SYSTEM
    if w.status == Status.COMPLETED:  # it ran; what it returned is wrong: the node's fault
        return USER
    return classify_error(w.error)


def classify_error(error: Optional[str]) -> str:
    """``user`` or ``system`` from a failed workload's ``error`` text (see the module's rules)."""
    text = (error or "").strip()
    if infrastructure_failure(text):
        return SYSTEM
    low = text.lower()
    if any(low.startswith(p) for p in _SYSTEM_PREFIXES):
        return SYSTEM
    return USER


def restarts(w: Optional[Any]) -> int:  # a Workload or engine.WorkloadView
    """System failures the scheduler already absorbed inside this workload (preemption, a lost
    node or run: each started a new attempt of the same workload; a node's workload is never
    retried for its own errors, its ``max_retries`` is 0)."""
    return max(0, w.attempt - 1) if w is not None else 0


def fail_fast_of(sub: Any) -> bool:
    """Whether the run stops at the first node that fails for good: ``runtime_params.fail_fast``
    when given, else ``slo.fail_fast`` (default False: independent branches go on)."""
    own = getattr(sub.runtime_params, "fail_fast", None)
    return bool(sub.dag_spec.slo.fail_fast if own is None else own)
