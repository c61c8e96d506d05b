"""``orion pipeline submit|status|cancel|retry|logs``: pipelines from the command line
(docs/pipelines.md; ``status --items NODE``: a map node's items, docs/pipelines-map.md; ``retry``
and ``logs``: docs/pipelines-operations.md).

``orion pipeline submit FILE`` sends FILE ('-': stdin) as it is: a pipeline spec (its text is the
``dag_spec``, verbatim), or a whole submission (a mapping with ``dag_spec`` and optionally
``runtime_params`` and ``refs``). ``--ref node=module:function``, ``--submission-id`` and
``--tenant`` (an admin key) add to it; ``--wait`` follows the run until it ends.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import yaml

TERMINAL = ("succeeded", "failed", "cancelled")


def _client() -> Any:
    from ..client import OrionClient

    return OrionClient()


def _out(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2, default=str))
        return
    print(f"{obj.get('submission_id')}  {obj.get('state')}{_tasks(obj.get('progress') or {})}")
    for n in obj.get("nodes", []):
        extra = n.get("error") or n.get("reason") or ""
        if n.get("user_failures") or n.get("system_failures"):  # counted apart (failures.py)
            extra = (
                f"[failures: user {n.get('user_failures', 0)}, system {n.get('system_failures', 0)}] {extra}"
            )
        wid = n.get("workload_id") or ""
        print(f"  {n['node_id']:<24} {n['state']:<10} attempt {n['attempt']}  {wid}{_tasks(n)}  {extra}")


def _tasks(counts: dict[str, Any]) -> str:
    """``  tasks 12/20 done, 1 failed, 4 running`` (the training platform's completed / total)."""
    if "total_tasks" not in counts:
        return ""
    return (
        f"  tasks {counts['completed_tasks']}/{counts['total_tasks']} done, "
        f"{counts['failed_tasks']} failed, {counts['running_tasks']} running"
    )


def _items_out(page: dict[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps(page, indent=2, default=str))
        return
    print(f"{page['submission_id']}  {page['node_id']}  {page['state']}{_tasks(page)}")
    for it in page["items"]:
        wid = it.get("workload_id") or ""
        print(f"  {it['index']:>6} {it['state']:<10} attempt {it['attempt']}  {wid}  {it.get('error') or ''}")
    if page.get("next_after") is not None:
        print(f"  … more: --after {page['next_after']}")


def body_of(text: str, *, refs: list[str], submission_id: Optional[str]) -> dict[str, Any]:
    """The submission for FILE's ``text`` and the command line's additions."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None  # sent as it is: the API names the problem (line and column)
    if isinstance(doc, dict) and "dag_spec" in doc:
        body = dict(doc)
    else:
        body = {"dag_spec": text}
    runtime = dict(body.get("runtime_params") or {})
    if submission_id:
        runtime["submission_id"] = submission_id
    body["runtime_params"] = runtime
    extra = {}
    for ref in refs:
        node, sep, fn = ref.partition("=")
        if not sep or not node or not fn:
            raise ValueError(f"--ref {ref!r}: write node=package.module:function")
        extra[node] = fn
    body["refs"] = {**(body.get("refs") or {}), **extra}
    return body


def cmd_submit(a: Any) -> int:
    text = sys.stdin.read() if a.file == "-" else Path(a.file).read_text()
    c = _client()
    body = body_of(text, refs=a.ref or [], submission_id=a.submission_id)
    ack = c.submit_pipeline(body["dag_spec"], body["runtime_params"], body["refs"], tenant_id=a.tenant)
    if not a.wait:
        _out(ack, a.output)
        return 0
    deadline = None if a.timeout is None else time.monotonic() + a.timeout
    while True:
        got = c.pipeline_status(ack["submission_id"])
        if got["state"] in TERMINAL:
            _out(got, a.output)
            return 0 if got["state"] == "succeeded" else 1
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"pipeline run {ack['submission_id']} still {got['state']} after {a.timeout:g}s"
            )
        time.sleep(0.5)


def cmd_status(a: Any) -> int:
    if a.items:
        _items_out(_client().pipeline_items(a.id, a.items, a.after, a.limit, a.state), a.output)
        return 0
    _out(_client().pipeline_status(a.id), a.output)
    return 0


def cmd_cancel(a: Any) -> int:
    _out(_client().cancel_pipeline(a.id), a.output)
    return 0


def cmd_retry(a: Any) -> int:
    c = _client()
    got = c.retry_pipeline(a.id)
    if a.wait:
        got = c.wait_pipeline(a.id, timeout=a.timeout)
        _out(got, a.output)
        return 0 if got["state"] == "succeeded" else 1
    _out(got, a.output)
    return 0


def cmd_logs(a: Any) -> int:
    got = _client().pipeline_logs(a.id, a.node, a.attempt)
    if a.output == "json":
        print(json.dumps(got, indent=2, default=str))
    else:
        sys.stdout.write(got.get("logs") or "")
    return 0


def cmd_output(a: Any) -> int:
    """One output of a node, as JSON (inline, or read by Orion from the artifact store)."""
    print(json.dumps(_client().pipeline_output(a.id, a.node, a.name), indent=2, default=str))
    return 0


def add_commands(sub: Any, out: Any) -> None:
    """Add ``orion pipeline …`` to the ``orion`` parser (``out`` adds ``--output``)."""
    pl = sub.add_parser("pipeline", help="pipelines: submit, status, cancel, retry, logs, output")
    psub = pl.add_subparsers(dest="pipeline_command", required=True)
    s = out(psub.add_parser("submit", help="submit a pipeline spec or submission (YAML/JSON; '-' = stdin)"))
    s.add_argument("file")
    s.add_argument("--ref", action="append", help="node=package.module:function (repeatable)")
    s.add_argument("--submission-id", help="the run's id and idempotency key")
    s.add_argument("--tenant", help="submit for this tenant (admin key)")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends")
    s.add_argument("--timeout", type=float, help="seconds to wait with --wait")
    s.set_defaults(fn=cmd_submit)
    st = out(psub.add_parser("status", help="a run and its nodes"))
    st.add_argument("id")
    st.add_argument("--items", metavar="NODE", help="list this map node's items (a page)")
    st.add_argument("--after", type=int, default=-1, help="with --items: the items above this index")
    st.add_argument("--limit", type=int, default=100, help="with --items: at most this many (≤ 1000)")
    st.add_argument("--state", help="with --items: only the items in this state")
    st.set_defaults(fn=cmd_status)
    c = out(psub.add_parser("cancel", help="cancel a run"))
    c.add_argument("id")
    c.set_defaults(fn=cmd_cancel)
    r = out(psub.add_parser("retry", help="run a failed or cancelled run again from its failed nodes"))
    r.add_argument("id")
    r.add_argument("--wait", action="store_true", help="follow the run until it ends")
    r.add_argument("--timeout", type=float, help="seconds to wait with --wait")
    r.set_defaults(fn=cmd_retry)
    lg = out(psub.add_parser("logs", help="a node's logs (its current or last attempt)"))
    lg.add_argument("id")
    lg.add_argument("--node", required=True, help="the node's id")
    lg.add_argument("--attempt", type=int, help="this attempt's logs (1 is the first)")
    lg.set_defaults(fn=cmd_logs)
    op = psub.add_parser("output", help="one output of a node, as JSON")
    op.add_argument("id")
    op.add_argument("--node", required=True, help="the node's id")
    op.add_argument("--name", required=True, help="the output's name (one of the node's outs)")
    op.set_defaults(fn=cmd_output)
