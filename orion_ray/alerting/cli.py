"""``orion alerts ...``: render the alert rules and the Alertmanager configuration (offline).

orion alerts rules [--out FILE]                          # the original's alert table as Prometheus rules
orion alerts render --config alerting.yaml [--out FILE]  # Alertmanager routing by severity
orion alerts secrets --dir DIR                           # secret files from environment variables
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError as PydanticValidationError

from ..errors import ConfigError
from .alertmanager import SECRET_ENV, AlertingSettings, render_alertmanager, write_secret_files
from .rules import render_rules


def load_settings(path: str) -> AlertingSettings:
    """``alerting.yaml`` validated; ``ConfigError`` names every bad field (an inline secret is an
    unknown field: the file only says where secrets are)."""
    try:
        raw = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return AlertingSettings.model_validate(raw)
    except PydanticValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        raise ConfigError(f"invalid alerting settings in {path}", details) from None


def _emit(text: str, out: Optional[str]) -> None:
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_alerts(args: argparse.Namespace) -> int:
    """Run one ``orion alerts`` verb."""
    if args.alerts_command == "rules":
        _emit(render_rules(), args.out)
    elif args.alerts_command == "render":
        _emit(render_alertmanager(load_settings(args.config)), args.out)
    else:
        written = write_secret_files(args.dir)
        for var, path in written.items():
            print(f"{var} -> {path}")
        missing = sorted(set(SECRET_ENV) - set(written))
        if missing:
            print(f"not set (no file written): {', '.join(missing)}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    """Add ``orion alerts rules|render|secrets`` to the ``orion`` parser."""
    al = sub.add_parser("alerts", help="alert rules and Alertmanager routing (offline)")
    asub = al.add_subparsers(dest="alerts_command", required=True)
    r = asub.add_parser("rules", help="the original's alert table as Prometheus rules")
    r.add_argument("--out", help="write here instead of stdout")
    rd = asub.add_parser("render", help="an Alertmanager configuration routing by severity")
    rd.add_argument("--config", required=True, help="alerting settings YAML (no secrets: file paths)")
    rd.add_argument("--out", help="write here instead of stdout")
    se = asub.add_parser("secrets", help="write the secret files from environment variables (0600)")
    se.add_argument("--dir", required=True, help="directory Alertmanager reads them from")
    for p in (r, rd, se):
        p.set_defaults(fn=cmd_alerts)
