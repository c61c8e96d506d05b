"""``orion_ray.pids``: which process listens on a port (``orion down`` checks Orion's API port is
free after the head is stopped, and stops a leftover Ray process there by its pid)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from orion_ray.cluster import _is_ray_process
from orion_ray.pids import alive, listening


def test_the_listening_process_is_found_by_its_port_and_nothing_else_is():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert listening(port) == set()  # bound, not yet listening
        s.listen()
        assert listening(port) == {os.getpid()}
    assert listening(port) == set()


def test_a_listener_in_another_process_is_found_and_only_ray_processes_count_as_ray():
    code = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "print(s.getsockname()[1], flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline())
        assert listening(port) == {p.pid}
        assert not _is_ray_process(p.pid) and alive(p.pid)
    finally:
        p.kill()
        p.wait()
