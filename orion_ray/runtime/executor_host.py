"""The driver that owns ``orion-executor``: a Ray job that stays alive for as long as Orion runs.

Ray gives the tasks an actor submits the job of the driver that created the actor, and it never
reuses a worker whose job has ended: the raylet exits the worker as soon as its task returns
("Force exiting worker whose job has exited"). ``orion up``'s driver exits once Orion answers, so an
executor created by it (or by the scheduler it started) made every task workload start a fresh
Python worker, about a second of CPU each: that capped a 2-CPU node at ~5 workloads/s and was the
tail of every idle submission. This module's ``main`` runs as a Ray job: its driver creates the
executor and then waits for as long as the executor exists, so the executor's job stays alive and
its workers are reused (within a tenant: see ``executor.tenant_env``).

``python -m orion_ray.runtime.executor_host [--namespace NS]`` is the job's entrypoint.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Optional

import ray

from ..names import EXECUTOR_NAME, NAMESPACE
from .executor import TaskExecutor

HOST_JOB_PREFIX = "orion-executor-host"
POLL_S = 5.0


def start_executor(namespace: str, *, scheduling_strategy: Any, control_token: Optional[str] = None) -> Any:
    """The detached ``orion-executor`` actor: the running one, or a new one placed by
    ``scheduling_strategy`` (the head node), guarded by ``control_token``."""
    from .ray_runtime import close_ray_call

    return (
        close_ray_call(ray.remote(TaskExecutor))
        .options(
            name=EXECUTOR_NAME,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,
            max_concurrency=10_000,
            scheduling_strategy=scheduling_strategy,
        )
        .remote(namespace, control_token)
    )


def executor_exists(namespace: str) -> bool:
    """Whether ``orion-executor`` is alive (or restarting) in ``namespace``."""
    try:
        ray.get_actor(EXECUTOR_NAME, namespace=namespace)
    except ValueError:
        return False
    return True


def main(argv: Optional[list[str]] = None) -> int:
    """Create the executor from this driver, then keep the driver (and so its job) alive until
    the executor is gone for good (``orion down`` kills it without restart)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    p = argparse.ArgumentParser(prog="python -m orion_ray.runtime.executor_host")
    p.add_argument("--namespace", default=NAMESPACE)
    # the credential is read from orion up's file (0600), never from the job's entrypoint or
    # environment, which anyone who lists Ray jobs can read
    p.add_argument("--token-file", default=None, help="file holding the control plane's credential")
    args = p.parse_args(argv)
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip() or None
        except OSError as exc:  # attached to a cluster whose head lacks the file: say so, run unguarded
            print(f"warning: no control token ({exc}); {EXECUTOR_NAME} runs unguarded", flush=True)
    ray.init(address="auto", namespace=args.namespace, logging_level=logging.WARNING)
    here = ray.get_runtime_context().get_node_id()  # a job's driver runs on the head
    head = NodeAffinitySchedulingStrategy(here, soft=False)
    executor = start_executor(args.namespace, scheduling_strategy=head, control_token=token)
    ray.get(executor.has.remote("", 0))  # created and answering
    print(f"hosting {EXECUTOR_NAME} in namespace {args.namespace}", flush=True)
    while executor_exists(args.namespace):
        time.sleep(POLL_S)
    print(f"{EXECUTOR_NAME} is gone; the host exits", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
