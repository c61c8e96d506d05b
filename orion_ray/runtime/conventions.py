"""What Orion knows about Ray's errors, logs and runtime environments, kept next to the adapter
rather than in the scheduler: which errors mean the infrastructure (not the workload) failed, which
log lines Ray's job manager adds, and which ``runtime_env`` keys bring code with them.

Pure string knowledge: nothing here imports Ray.
"""

from __future__ import annotations

from typing import Optional

# Ray errors that mean the run's process or node went away, not that the workload failed.
INFRA_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OwnerDiedError",
    "ObjectLostError",
    "ObjectReconstructionFailed",
    # a task pinned to a node (hard affinity) that died before the task was scheduled there
    "TaskUnschedulableError",
)

# runtime_env keys that bring code the scheduler's own process cannot see
CODE_CARRIERS = ("working_dir", "py_modules", "pip", "conda", "uv", "container", "image_uri")

_RAY_JOB_NOISE = ("Runtime env is setting up.", "Running entrypoint for job ")


def infrastructure_failure(error: Optional[str]) -> bool:
    """The run's error names a Ray infrastructure failure (its worker or node died)."""
    return bool(error) and str(error).split(":", 1)[0].strip() in INFRA_ERRORS


def brings_code(runtime_env: Optional[dict]) -> bool:
    """The runtime_env ships code (or a ``PYTHONPATH``) the scheduler's process cannot see."""
    env = runtime_env or {}
    return any(env.get(k) for k in CODE_CARRIERS) or "PYTHONPATH" in (env.get("env_vars") or {})


def clean_job_logs(text: str) -> str:
    """The job's own output, without the lines Ray's job manager adds."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(n in line for n in _RAY_JOB_NOISE))


# A custom resource the cluster configs give every worker node and never the head: a job
# workload's driver (which runs the tenant's entrypoint command) asks for a sliver of it, so in a
# cluster it runs on a worker, never beside Orion's store and keys on the head. A cluster without
# it (a local single-node `orion up`) runs drivers where Ray puts them: the head is the machine.
JOB_DRIVER_RESOURCE = "orion_job_driver"
JOB_DRIVER_AMOUNT = 0.001


def job_driver_options(cluster_resources: dict) -> dict:
    """The Jobs API ``entrypoint_resources`` that keep a job workload's driver off the head, or
    nothing when no node offers ``JOB_DRIVER_RESOURCE``."""
    if cluster_resources.get(JOB_DRIVER_RESOURCE, 0) > 0:
        return {"entrypoint_resources": {JOB_DRIVER_RESOURCE: JOB_DRIVER_AMOUNT}}
    return {}
