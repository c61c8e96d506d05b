"""Search Ray's internal KV for a secret, as any workload on the cluster could (a driver process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

KV_SCAN = """
import json, sys, ray
from ray.experimental import internal_kv as kv
ray.init(address="auto", namespace="orion")
token = open(sys.argv[1]).read().strip().encode()
found, scanned = [], 0
for ns in (None, "serve", "orion", "fun", "session", "job", "jobs", "dashboard", "tracing"):
    for key in kv._internal_kv_list(b"", namespace=ns):
        scanned += 1
        value = kv._internal_kv_get(key, namespace=ns) or b""
        if token in value:
            found.append([str(ns), key.decode(errors="replace")])
print(json.dumps({"scanned": scanned, "found": found}))
"""


def scan_kv_for(secret_file: Path, address: str, env: dict[str, str]) -> dict[str, Any]:
    """Every key of Ray's internal KV (the namespaces Ray, Serve and Orion use) whose value holds
    the secret in ``secret_file``: ``{"scanned": n, "found": [[namespace, key], ...]}``."""
    p = subprocess.run(
        [sys.executable, "-c", KV_SCAN, str(secret_file)],
        env=dict(env, RAY_ADDRESS=address),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])
