"""``orion deploy | deployments | scale | undeploy | release``: model serving from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def _client():
    from .client import ServingClient

    return ServingClient()


def _out(obj, output: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if output == "json" else obj)


def documents(text: str) -> tuple[list[dict], list[dict]]:
    """Deployments and releases from a YAML file: one or more documents, each a deployment, a
    release (it has ``strategy``), or ``{deployments: [...], release: {...}}``."""
    deployments, releases = [], []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SystemExit("each YAML document must be a mapping (a deployment or a release)")
        if "deployments" in doc or "release" in doc:
            deployments += list(doc.get("deployments") or [])
            if doc.get("release"):
                releases.append(doc["release"])
        elif "strategy" in doc:
            releases.append(doc)
        else:
            deployments.append(doc)
    return deployments, releases


DEMO_MODEL = {
    "model_id": "smollm2",
    "version": "v1",
    "engine": "cpu",
    "engine_args": {"n_ctx": 2048},
    "ready_deadline": "10m",
}


def deploy_demo(api_url: str) -> None:
    """``orion up --demo``: serve the CPU model as a shared model (idempotent)."""
    from serve_apps.llm.engines.cpu import cpu_engine_available

    from ..errors import Conflict

    why = cpu_engine_available()
    if why:
        raise SystemExit(f"--demo serves SmolLM2 on CPU, which is not installed: {why}")
    try:
        _client().deploy(DEMO_MODEL)
    except Conflict:
        pass
    print(
        f"  demo model: smollm2 (CPU) — curl {api_url}/v1/chat/completions -H "
        "'Authorization: Bearer <key>' -H 'Content-Type: application/json' "
        "-d '{\"model\": \"smollm2\", \"messages\": "
        "[{\"role\": \"user\", \"content\": \"Hi\"}]}'"
    )


def cmd_deploy(a) -> int:
    text = sys.stdin.read() if a.file == "-" else Path(a.file).read_text()
    deployments, releases = documents(text)
    c = _client()
    done = [c.deploy(d) for d in deployments] + [c.set_release(r) for r in releases]
    if a.output == "json":
        _out(done, "json")
    for d in done if a.output != "json" else []:
        if "strategy" in d:
            print(f"release {d['model_id']}: {d['strategy']} {d['phase']} weights {d['weights']}")
        else:
            print(f"deployed {d['id']} ({d['engine']}, {d['status']})")
    return 0


def cmd_deployments(a) -> int:
    items = _client().deployments(a.model, a.tenant, a.status)
    if a.output == "json":
        _out(items, "json")
        return 0
    print(f"{'ID':<32} {'ENGINE':<6} {'STATUS':<10} {'REPLICAS':>8} {'GPU/R':>5} {'TENANT':<12}")
    for d in items:
        print(
            f"{d['id']:<32} {d['engine']:<6} {d['status']:<10} {d['running_replicas']:>8} "
            f"{d['gpus_per_replica']:>5g} {d['tenant_id'] or '(shared)':<12}"
        )
    return 0


def cmd_scale(a) -> int:
    if a.replicas is not None:
        body = {"replicas": a.replicas}
    elif a.max is not None:
        body = {
            "autoscaling": {"min_replicas": a.min, "max_replicas": a.max, "target_ongoing_requests": a.target}
        }
    else:
        raise SystemExit("give --replicas N, or --max N (with --min, --target) for autoscaling")
    if a.version:
        body["version"] = a.version
    _out(_client().scale(a.model, body), a.output if a.output == "json" else "json")
    return 0


def cmd_undeploy(a) -> int:
    _out(_client().undeploy(a.id), a.output)
    return 0


def cmd_release(a) -> int:
    c = _client()
    rel = c.rollback(a.model) if a.rollback else c.release(a.model)
    if a.output == "json":
        _out({**rel, "events": c.events(a.model, 20)}, "json")
        return 0
    print(
        f"{rel['model_id']}: {rel['strategy']} {rel['phase']} step {rel['step'] + 1} weights {rel['weights']}"
    )
    for e in c.events(a.model, 10):
        print(f"  {e['at']:.0f} {e['kind']:<12} {e['message']}")
    return 0


def add_commands(sub, out) -> None:
    """Add the serving commands to the ``orion`` parser (``out`` adds ``--output``)."""
    d = out(sub.add_parser("deploy", help="deploy model versions and/or a release from YAML"))
    d.add_argument("file", help="YAML file ('-' = stdin)")
    d.set_defaults(fn=cmd_deploy)
    ls = out(sub.add_parser("deployments", help="model deployments (admin)"))
    ls.add_argument("--model")
    ls.add_argument("--tenant")
    ls.add_argument("--status")
    ls.set_defaults(fn=cmd_deployments)
    s = out(sub.add_parser("scale", help="set a model's replicas or autoscaling bounds"))
    s.add_argument("model")
    s.add_argument("--replicas", type=int)
    s.add_argument("--min", type=int, default=1)
    s.add_argument("--max", type=int)
    s.add_argument("--target", type=float, default=2.0, help="target ongoing requests")
    s.add_argument("--version")
    s.set_defaults(fn=cmd_scale)
    u = out(sub.add_parser("undeploy", help="remove a deployment (MODEL--VERSION)"))
    u.add_argument("id")
    u.set_defaults(fn=cmd_undeploy)
    r = out(sub.add_parser("release", help="a model's release state and events"))
    r.add_argument("model")
    r.add_argument("--rollback", action="store_true", help="send all traffic to stable")
    r.set_defaults(fn=cmd_release)
