"""Task functions the benchmarks run on Ray workers (importable there as ``benchmarks._tasks``)."""

import os
import time


def started_at() -> float:
    """The wall-clock time at which the task started running."""
    return time.time()


def sleep_and_mark(seconds: float, marker_dir: str) -> float:
    """Append one line to ``<marker_dir>/<workload id>`` (one line per execution), sleep, and
    return the start time. The line count tells how many times a workload really ran."""
    t = time.time()
    name = os.environ.get("ORION_WORKLOAD_ID", "unknown")
    with open(os.path.join(marker_dir, name), "a") as f:
        f.write(f"{t} {os.getpid()}\n")
    time.sleep(seconds)
    return t
