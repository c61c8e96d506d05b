"""``orion schedule create|list|get|pause|resume|delete|backfill``, ``orion trigger
create|list|delete`` and ``orion event TYPE`` (docs/pipelines-schedules.md).

``create FILE`` ('-': stdin) sends the YAML or JSON definition as it is (a ``submission.dag_spec``
given as text stays text: the API reads it as ``/api/orch/submit`` does). ``--tenant`` acts for
a tenant with an admin key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .cli import _client


def _out(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2, default=str))
        return
    items: list[Any] = obj["items"] if isinstance(obj, dict) and "items" in obj else [obj]
    for it in items:
        if "event_id" in it:
            print(f"event {it['event_id']}  {it['type']}")
            for f in it.get("fired", []):
                print(f"  {f['trigger']:<24} {f.get('submission_id') or ''}  {f.get('error') or ''}")
            continue
        if "slots" in it:
            print(f"{it['name']}  {it['slots']} slots, {it['submitted']} new runs")
            continue
        state = "paused" if it.get("paused") else "active"
        when = it.get("cron") or f"on {it.get('event_type')} {it.get('match_labels') or ''}"
        tail = f"next {it.get('next_slot')}" if it.get("cron") else ""
        print(
            f"{it.get('name'):<24} {state:<7} {when:<24} fired {it.get('fired', 0)}"
            f"  missed {it.get('missed', 0)}  skipped {it.get('skipped', 0)}  {tail}".rstrip()
        )


def _definition(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML or JSON ({exc})") from None


def _time(text: str) -> Any:
    """Epoch seconds as a number, anything else as it is (ISO 8601: the API reads it)."""
    try:
        return float(text)
    except ValueError:
        return text


def cmd_schedule(a: Any) -> int:
    c, t = _client(), a.tenant
    verb = a.schedule_command
    if verb == "create":
        got = c.create_schedule(_definition(a.file), tenant_id=t)
    elif verb == "list":
        got = c.list_schedules(tenant_id=t)
    elif verb == "get":
        got = c.get_schedule(a.name, tenant_id=t)
    elif verb == "backfill":
        got = c.backfill_schedule(a.name, _time(a.start), _time(a.end), tenant_id=t)
    else:
        got = getattr(c, f"{verb}_schedule")(a.name, tenant_id=t)
    _out(got, a.output)
    return 0


def cmd_trigger(a: Any) -> int:
    c, t = _client(), a.tenant
    if a.trigger_command == "create":
        got = c.create_trigger(_definition(a.file), tenant_id=t)
    elif a.trigger_command == "list":
        got = c.list_triggers(tenant_id=t)
    else:
        got = c.delete_trigger(a.name, tenant_id=t)
    _out(got, a.output)
    return 0


def cmd_event(a: Any) -> int:
    labels = {}
    for item in a.label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {item!r}: write key=value")
        labels[key] = value
    _out(_client().post_event(a.type, labels, tenant_id=a.tenant), a.output)
    return 0


def add_commands(sub: Any, out: Any) -> None:
    """Add ``orion schedule …``, ``orion trigger …`` and ``orion event`` to the ``orion`` parser."""
    sc = sub.add_parser("schedule", help="cron schedules of pipeline runs")
    ssub = sc.add_subparsers(dest="schedule_command", required=True)
    for verb, what in (
        ("create", "create from a YAML/JSON definition ('-' = stdin)"),
        ("list", "your schedules"),
        ("get", "one schedule"),
        ("pause", "pause"),
        ("resume", "resume (paused slots are passed over)"),
        ("delete", "delete (its runs stay)"),
        ("backfill", "a run for every slot in [--start, --end]"),
    ):
        p = out(ssub.add_parser(verb, help=what))
        if verb == "create":
            p.add_argument("file")
        elif verb != "list":
            p.add_argument("name")
        if verb == "backfill":
            p.add_argument("--start", required=True, help="ISO 8601 (or epoch seconds)")
            p.add_argument("--end", required=True, help="ISO 8601 (or epoch seconds)")
        p.add_argument("--tenant", help="act for this tenant (admin key)")
        p.set_defaults(fn=cmd_schedule)
    tr = sub.add_parser("trigger", help="event triggers of pipeline runs")
    tsub = tr.add_subparsers(dest="trigger_command", required=True)
    for verb in ("create", "list", "delete"):
        p = out(tsub.add_parser(verb, help=f"{verb} triggers"))
        if verb == "create":
            p.add_argument("file")
        elif verb == "delete":
            p.add_argument("name")
        p.add_argument("--tenant", help="act for this tenant (admin key)")
        p.set_defaults(fn=cmd_trigger)
    ev = out(sub.add_parser("event", help="post an event: the matching triggers fire"))
    ev.add_argument("type")
    ev.add_argument("--label", action="append", help="key=value (repeatable)")
    ev.add_argument("--tenant", help="for this tenant (admin key)")
    ev.set_defaults(fn=cmd_event)
