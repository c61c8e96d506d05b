"""The KubeRay path's control credential, live: Orion built by ``orion_api(args)`` (the builder a
RayService names) on a real Ray cluster, with the credential in a directory as the ``orion-control``
Secret is mounted on the head.

Tried: building without the Secret; the REST API with the admin key whose hash is in the args; a
Ray task (workload code, no token) calling the scheduler's ``configure_tenants``, ``list``,
``cancel``, ``__ray_call__`` and the executor's, serving manager's and autoscaler's privileged
methods; a scan of Ray's internal KV (where Serve keeps the app's args) for the token.
Answered: no Secret, no Orion (a ConfigError naming ``control_token_dir``, nothing deployed); the
API works; every call is refused with "needs the control plane's credential"; the token is in no
KV entry. On main's builder the scheduler was created without a token, so every call went through.

The cluster runs in a driver process of its own (``kuberay_serve_driver``): this module needs a
cluster with Serve and no Orion yet, while this process may be connected to the session's
``ray_cluster``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])

pytestmark = pytest.mark.timeout(900)  # a loaded 2-core machine: the actors start slowly


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kuberay")
    p = subprocess.run(
        [sys.executable, "-m", "tests.integration.kuberay_serve_driver", str(tmp)],
        cwd=ROOT,
        env=dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_without_the_secret_nothing_is_deployed(findings):
    (problem,) = findings["without_secret"]
    assert problem["field"] == "control_token_dir" and "control_token" in problem["problem"]
    assert not [n for n in findings["actors_after_refusal"] if n.startswith("orion-")]


def test_the_api_built_as_serve_does_runs_a_task(findings):
    assert findings["submit"] == 202
    assert findings["task"] == {"status": "completed", "result": math.factorial(6)}


def test_workload_code_cannot_call_the_actors_without_the_credential(findings):
    attacks = findings["attacks"]
    assert len(attacks) == 13, attacks  # the scheduler, executor, serving manager and autoscaler
    reached = {k: v for k, v in attacks.items() if "needs the control plane's credential" not in v}
    assert reached == {}, reached


def test_the_token_is_not_in_rays_internal_kv(findings):
    assert findings["kv"]["scanned"] > 0 and findings["kv"]["found"] == [], findings["kv"]
