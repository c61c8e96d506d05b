"""The driver of an Orion job: runs the user's shell entrypoint inside the workload's reservation.

Ray's Job API reserves resources only for a job's driver and cannot place it in a placement group, so
Orion submits this small driver instead: it connects to the cluster, starts one task in bundle 0 of
the workload's placement group (with that bundle's CPUs and GPUs, so ``CUDA_VISIBLE_DEVICES`` are the
reserved GPUs), runs the entrypoint there as a subprocess and streams its output back, line by line,
into the job's log. Its exit status is the entrypoint's.

    python -m orion_ray.runtime.job_runner --pg orion-<id> --namespace orion --bundle '{"CPU": 1}' -- CMD
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys


def _run_in_bundle(command: str):
    """Generator task: yield output chunks, then the exit code."""
    proc = subprocess.Popen(
        command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        yield line
    yield proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orion-job-runner")
    parser.add_argument("--pg", required=True)
    # names.NAMESPACE; the literal keeps this worker-side script on the standard library alone
    parser.add_argument("--namespace", default="orion")
    parser.add_argument("--bundle", default="{}")
    # The cluster to join. "auto" reads /tmp/ray/ray_current_cluster, which names whichever
    # cluster on the machine started last: with two clusters a job could join the wrong one.
    parser.add_argument("--address", default="auto")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    command = " ".join(ns.command[1:] if ns.command[:1] == ["--"] else ns.command)
    bundle = json.loads(ns.bundle)

    import ray
    from ray.util.placement_group import get_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(
        address=ns.address,
        namespace=ns.namespace,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )
    pg = get_placement_group(ns.pg)
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}
    task = ray.remote(num_returns="streaming", max_retries=0)(_run_in_bundle).options(
        name=f"{ns.pg}-entrypoint",
        num_cpus=bundle.get("CPU", 0),
        num_gpus=bundle.get("GPU", 0),
        memory=bundle.get("memory") or None,
        resources=custom or None,
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
        ),
        runtime_env={"env_vars": {"ORION_PLACEMENT_GROUP": ns.pg, "ORION_NAMESPACE": ns.namespace}},
    )
    code = 1
    for ref in task.remote(command):
        chunk = ray.get(ref)
        if isinstance(chunk, bytes):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        else:
            code = int(chunk)
    return code


if __name__ == "__main__":
    sys.exit(main())
