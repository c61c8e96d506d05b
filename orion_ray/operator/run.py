"""``orion operator run``: the operator in this process, against the current kubeconfig."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional


def run(
    *,
    namespaces: tuple[str, ...] = (),
    peering: Optional[str] = None,
    liveness: Optional[str] = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or a signal). ``namespaces`` empty: every
    namespace. ``peering``: the KopfPeering name that elects one active replica; none: standalone
    (one replica, as for local use). ``liveness``: kopf's health endpoint, e.g.
    ``http://0.0.0.0:8080/healthz`` (a Deployment's liveness probe)."""
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def add_commands(sub: Any) -> None:
    """``orion operator run`` on the CLI's subcommands."""
    op = sub.add_parser("operator", help="the AIWorkload operator (Kubernetes; docs/operator.md)")
    op_sub = op.add_subparsers(dest="operator_command", required=True)
    r = op_sub.add_parser("run", help="run the operator against the current kubeconfig")
    r.add_argument("--namespace", "-n", action="append", default=[], help="watch only these (repeatable)")
    r.add_argument("--peering", default=None, help="KopfPeering name for leader election (several replicas)")
    r.add_argument("--liveness", default=None, help="health endpoint, e.g. http://0.0.0.0:8080/healthz")
    r.set_defaults(fn=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The CLI's entry: check the configuration first, so a missing key is one clear line."""
    try:
        import kopf  # noqa: F401
    except ImportError:
        print('orion operator needs kopf: pip install "orion-ray[operator]"')
        return 1
    from .handlers import OperatorConfig, configure

    try:
        configure(OperatorConfig.from_env())
    except (ValueError, OSError) as exc:
        print(f"orion operator: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(namespaces=tuple(args.namespace), peering=args.peering, liveness=args.liveness)
    return 0
