"""Submission checks: what a workload must pass before it is queued, and the acknowledgement.

The spec is validated (pydantic, then the rules pydantic cannot know: the task's module must be
importable unless its runtime_env brings the code, only protected classes may opt out of
preemption, the tenant must exist, and a tenant submits only at the priority classes it was
granted and opts out of preemption only if allowed), the queue limits are checked, and, when
the policy asks, a deadline the forecast says cannot be met is refused. The acknowledgement
carries the position in the policy's order and the estimated start and completion.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Optional

from ..config import TenantConfig
from ..errors import Forbidden, QueueFull, ValidationError, pydantic_details
from ..models import Workload, WorkloadSpec, iso
from ..runtime.conventions import brings_code
from ..status import Status
from ..trust import function_problem
from . import estimates

if TYPE_CHECKING:
    from .core import Scheduler

ACK_FORECAST_MAX_QUEUED = 100  # deeper queues: the ack's position is by class and arrival only


def parse(
    spec: dict[str, Any], *, tenant_id: str, sched: "Scheduler", by_admin: bool = False
) -> WorkloadSpec:
    """The validated spec, or ``ValidationError`` naming the field and the reason (``Forbidden``
    for a priority or a preemption opt-out the tenant was not granted, unless ``by_admin``)."""
    try:
        parsed = WorkloadSpec.model_validate(spec)
    except Exception as exc:  # pydantic's error → the contract's error
        raise ValidationError("invalid workload spec", pydantic_details(exc)) from None
    check_importable(parsed)
    check_spec(
        parsed,
        tenant_id,
        protected=sched.policy_config.preemption.protected_classes,
        known=sched.tenants.known(tenant_id),
        tenant=sched.tenants.get(tenant_id),
        by_admin=by_admin,
        allowed_modules=allowed_modules(sched.tenants.get(tenant_id)),
    )
    return parsed


def allowed_modules(tenant: Any) -> tuple[str, ...]:
    """The modules the operator allows ``tenant`` (a ``TenantConfig`` or ``None``) despite the
    task-function denylist."""
    return tuple(getattr(tenant, "allowed_function_modules", None) or ())


def check_spec(
    spec: WorkloadSpec,
    tenant_id: str,
    *,
    protected: list[str],
    known: bool,
    tenant: Optional[TenantConfig] = None,
    by_admin: bool = False,
    allowed_modules: tuple[str, ...] = (),
) -> None:
    """The checks every submission passes before its transaction, wherever it arrives (the
    scheduler, or an API replica writing to the store). ``tenant`` is the tenant's
    configuration (None for the admin's ``default`` tenant); ``by_admin`` skips the grants;
    ``allowed_modules`` are the operator's exceptions to the task-function denylist."""
    if spec.workload_type == "task" and spec.function:
        problem = function_problem(spec.function, allowed_modules)
        if problem:
            raise ValidationError(
                "this function may not run as a task", [{"field": "function", "problem": problem}]
            )
    if not spec.preemptible and spec.priority.value not in protected:
        raise ValidationError(
            "this priority class may not opt out of preemption",
            [
                {
                    "field": "preemptible",
                    "problem": f"false is only allowed for classes {', '.join(protected) or '(none)'}",
                }
            ],
        )
    if not known:
        raise ValidationError(
            f"unknown tenant {tenant_id!r}",
            [{"field": "metadata.tenant_id", "problem": "no such tenant is configured"}],
        )
    if tenant is not None and not by_admin:
        check_grants(spec, tenant)


def check_grants(spec: WorkloadSpec, tenant: TenantConfig) -> None:
    """403 for a class the tenant was not granted, or ``preemptible: false`` without the right:
    either would let one tenant preempt the others' work (``allowed_priorities``,
    ``may_disable_preemption``). A permission, not a malformed spec: the same spec is accepted
    from the admin or from a tenant that was granted it."""
    if spec.priority.value not in tenant.allowed_priorities:
        raise Forbidden(
            f"tenant {tenant.id!r} may not submit at priority {spec.priority.value!r}",
            [
                {
                    "field": "priority",
                    "problem": f"allowed for this tenant: {', '.join(tenant.allowed_priorities) or '(none)'}",
                }
            ],
        )
    if not spec.preemptible and not tenant.may_disable_preemption:
        raise Forbidden(
            f"tenant {tenant.id!r} may not opt out of preemption",
            [
                {
                    "field": "preemptible",
                    "problem": "allowed for this tenant: true (the operator grants may_disable_preemption)",
                }
            ],
        )


def check_importable(spec: WorkloadSpec) -> None:
    """Refuse a task whose module cannot be found, unless its runtime_env brings the code.

    Only the module is located (``find_spec``, which imports parent packages but not the module
    itself), so no user code runs in the scheduler.
    """
    if spec.workload_type != "task" or not spec.function or brings_code(spec.runtime_env):
        return
    module = spec.function.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValidationError(
            f"cannot import module {module!r} of {spec.function!r}",
            [
                {
                    "field": "function",
                    "problem": "module not importable on the cluster (install it or ship it with "
                    "runtime_env working_dir/py_modules)",
                }
            ],
        )


def check_room(sched: "Scheduler", tenant_id: str) -> None:
    """429 when the queue, or the tenant's share of it, is full."""
    active = sched.book.active
    size = sched.config.max_queue_size
    if len(active) >= size:
        raise QueueFull(f"the queue is full ({size} workloads)", retry_after=5)
    limit = sched.policy_config.tenant_queue_limit(sched.tenants.get(tenant_id), size)
    if limit is not None and sum(1 for w in active.values() if w.tenant_id == tenant_id) >= limit:
        raise QueueFull(f"tenant {tenant_id!r} has {limit} unfinished workloads (its limit)", retry_after=5)


def refuse_if_deadline_unreachable(sched: "Scheduler", w: Workload) -> None:
    """422 when the forecast says ``w`` cannot end before its deadline (policy option)."""
    start, _ = estimates.estimates(sched, extra=w).get(w.workload_id, (None, None))
    deadline = w.spec.deadline.timestamp()
    run = w.spec.timeout_s or 0.0
    if start is None or start + run > deadline:
        when = "never (no capacity is expected to free)" if start is None else iso(start)
        raise ValidationError(
            "the deadline cannot be met",
            [
                {
                    "field": "deadline",
                    "problem": f"estimated start {when} plus timeout_s {run:g}s is after the deadline",
                }
            ],
        )


def position(sched: "Scheduler", w: Workload) -> Optional[int]:
    """Position in the policy's order (by class and arrival only when the queue is deep)."""
    if w.status != Status.QUEUED:
        return None
    queued = sched.book.queued()
    if len(queued) <= ACK_FORECAST_MAX_QUEUED:
        ids = [c.workload_id for c in estimates.ordered(sched)]
        if w.workload_id in ids:
            return ids.index(w.workload_id) + 1
    return 1 + sum(1 for x in queued if (x.priority.rank, x.seq) < (w.priority.rank, w.seq))


def ack(sched: "Scheduler", w: Workload) -> dict[str, Any]:
    """The answer to a submission: id, status, queue position and estimates."""
    out = {
        "workload_id": w.workload_id,
        "status": w.status.value,
        "queue_position": position(sched, w),
        "estimated_start": None,
        "estimated_completion": None,
    }
    if w.status == Status.QUEUED and len(sched.book.queued()) <= ACK_FORECAST_MAX_QUEUED:
        start, end = estimates.for_ack(sched, w.workload_id)
        out.update(estimated_start=iso(start), estimated_completion=iso(end))
    return out
