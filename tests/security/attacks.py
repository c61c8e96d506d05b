"""Workload code the attack suite runs as a tenant's task (importable through PYTHONPATH): it finds
Orion's actors by name, as any task on the cluster can, and tries their privileged methods; and
small probes (a worker's pid, an error text of any size) that the findings' live tests run."""

from __future__ import annotations

from typing import Any, Callable


def _attempt(out: dict[str, str], name: str, call: Callable[[], Any]) -> None:
    import ray

    try:
        value = ray.get(call(), timeout=60)
        out[name] = f"ALLOWED: {str(value)[:300]}"
    except Exception as exc:  # what Orion answered: the test reads the reason
        out[name] = f"refused: {type(exc).__name__}: {str(exc)[-300:]}"


def reach_the_actors(victim_workload_id: str) -> dict[str, str]:
    """Call the scheduler, executor and serving actors without the control plane's credential:
    reconfigure tenants (with a payload the validation would refuse, so a reached call shows as a
    validation error, not as damage), list every tenant's work, cancel another tenant's workload,
    read the actor's state through Ray's ``__ray_call__``, the executor's and serving's
    privileged methods, and a step of the autoscaler."""
    import ray

    out: dict[str, str] = {}
    sched = ray.get_actor("orion-scheduler", namespace="orion")
    _attempt(
        out,
        "scheduler.configure_tenants",
        lambda: sched.configure_tenants.remote([{"id": "mallory", "weight": -1}], {}, None, "attacker"),
    )
    _attempt(out, "scheduler.list", lambda: sched.list.remote())
    _attempt(out, "scheduler.keyring", lambda: sched.keyring.remote())
    _attempt(out, "scheduler.cancel", lambda: sched.cancel.remote(victim_workload_id))
    _attempt(out, "scheduler.list(guessed token)", lambda: sched.list.remote(control_token="guess"))
    steal = lambda self: self._control_token  # noqa: E731
    _attempt(out, "scheduler.__ray_call__", lambda: sched.__ray_call__.remote(steal))
    executor = ray.get_actor("orion-executor", namespace="orion")
    _attempt(out, "executor.runs", lambda: executor.runs.remote())
    _attempt(out, "executor.cancel", lambda: executor.cancel.remote(victim_workload_id, 1))
    _attempt(out, "executor.__ray_call__", lambda: executor.__ray_call__.remote(lambda s: list(s._runs)))
    serving = ray.get_actor("orion-serving", namespace="orion")
    _attempt(out, "serving.list", lambda: serving.call.remote("list", None, None, None))
    _attempt(out, "serving.gpu_usage", lambda: serving.call.remote("gpu_usage"))
    _attempt(out, "serving.__ray_call__", lambda: serving.__ray_call__.remote(lambda self: "ran"))
    autoscaler = ray.get_actor("orion-autoscaler", namespace="orion")
    _attempt(out, "autoscaler.step", lambda: autoscaler.step.remote())
    return out


def worker_pid() -> int:
    """The pid of the worker process this task runs in: which tasks shared a process."""
    import os

    return os.getpid()


def raise_long(chars: int) -> None:
    """Raise with a message of about ``chars`` characters (error text a tenant controls), its
    start and end marked so a reader can tell which part was kept."""
    raise ValueError("HEAD-OF-ERROR " + "e" * chars + " TAIL-OF-ERROR")
