"""Schedules and event triggers in the scheduler's loop, next to the pipeline controller
(docs/pipelines-schedules.md). The decisions are pure (``pipelines/schedule_policy.py``,
``schedule_spec.matches``); this module reads the store, asks them, and writes each outcome in
one transaction (``pipelines/schedules_store.py``).

Each fire goes through the same intake as ``POST /api/orch/submit`` (``pipelines.intake.accept``
with the checks of whoever created the schedule, at fire time), with a deterministic
``submission_id``: ``<name>-<slot, UTC>`` for a cron slot, ``<name>-ev<event id>`` for an event.
With the schedule's ``last_slot`` (or the event's ``handled``) written in the same transaction as
the run, a crash anywhere repeats at most the planning, never a run.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional
from zoneinfo import ZoneInfo

from ..errors import Conflict, OrionError, ValidationError
from ..pipelines import runs_store
from ..pipelines import schedules_store as st
from ..pipelines.cron import next_slot, parse_cron, slot_name
from ..pipelines.intake import accept
from ..pipelines.records import RUN_ACTIVE, RUNNING, PipelineRun
from ..pipelines.schedule_policy import backfill_slots, plan
from ..pipelines.schedule_spec import Event, ScheduleSpec, TriggerSpec, matches, parse
from ..pipelines.spec import load_spec_text
from .every import Every

if TYPE_CHECKING:
    from .pipelines_host import PipelineHost

log = logging.getLogger("orion.pipelines.schedules")
EVENT_KEEP_S = 7 * 86400  # handled events kept this long (the audit log keeps who posted what)
PRUNE_S = 3600.0
# work per tick on fires, and again on events: a burst (every hourly schedule at the top of the
# hour) is spread over ticks 0.25 s apart rather than holding the scheduler's loop
BUDGET_S = 0.2


class ScheduleHost:
    """Fires due cron slots and handles events at each pipeline tick; answers the schedule calls."""

    def __init__(self, pipelines: "PipelineHost"):
        self.p = pipelines
        self.store = pipelines.s.store
        self.clock: Callable[[], float] = pipelines.s.clock
        self.prune = Every(PRUNE_S, self.clock)
        self.fires = 0  # runs stored by schedules and triggers (tests, metrics)
        self._parsed: dict[int, tuple[str, dict[str, Any]]] = {}  # seq → (definition, submission)

    # -- the loop ----------------------------------------------------------------------------------
    def tick(self) -> int:
        """Fire the due slots and handle pending events; how many runs were stored. One failing
        schedule or event is logged and tried again at the next tick."""
        stored = 0
        started = time.perf_counter()
        for row in st.due(self.store, self.clock()):
            try:
                stored += self.fire_due(row)
            except Exception:
                log.exception("schedule %s/%s: tick failed (tried again)", row.tenant_id, row.name)
            if time.perf_counter() - started > BUDGET_S:
                break  # the rest is still due: the next tick goes on (the loop must not stall)
        started = time.perf_counter()
        for event in st.pending_events(self.store):
            try:
                stored += len(self.handle_event(event))
            except Exception:
                log.exception("event %s: handling failed (tried again)", event["id"])
            if time.perf_counter() - started > BUDGET_S:
                break
        if self.prune.due():
            st.prune_events(self.store, self.clock() - EVENT_KEEP_S)
        return stored

    def fire_due(self, row: st.ScheduleRow) -> int:
        """One schedule's due slots: plan, cancel (``replace``), then fire in one transaction."""
        now = self.clock()
        spec = row.spec
        assert isinstance(spec, ScheduleSpec)
        cron = parse_cron(spec.cron, spec.timezone)
        active = self._active(row)
        todo = plan(spec, cron, last_slot=row.last_slot or row.created_at, now=now, active_run=active)
        if todo.cancel_active and row.last_run:
            # cancelled first, in its own transaction: after a crash here the slot is planned
            # again, finds the run cancelling (still active) and asks again (idempotent)
            self.p.cancel(row.last_run, row.tenant_id, f"schedule:{row.name}")
        runs: list[tuple[PipelineRun, list[str]]] = []
        error: Optional[str] = None
        if todo.fire:
            try:
                runs = self.runs_for(row, [f"{row.name}-{slot_name(s)}" for s in todo.fire], now)
            except OrionError as exc:  # e.g. a grant withdrawn since: the slots are handled, visibly
                d = exc.details[0] if exc.details else {}
                error = f"{exc.message} ({d.get('field')}: {d.get('problem')})" if d else exc.message
        skipped = len(todo.skipped) + (len(todo.fire) if error else 0)
        last_skip = todo.skipped[-1][1] if todo.skipped else (error and f"not fired: {error}")

        def write(
            fire: list[tuple[PipelineRun, list[str]]], skips: int, err: Optional[str]
        ) -> list[PipelineRun]:
            return st.commit_slots(
                self.store,
                row,
                runs=fire,
                last_slot=todo.last_slot,
                next_at=todo.next_at,
                missed=todo.missed,
                skipped=skips,
                last_skip=last_skip,
                last_error=err,
                now=now,
            )

        try:
            new = write(runs, skipped, error)
        except Conflict as exc:  # a run of the tenant's own already has a slot's id
            new = write([], skipped + len(runs), exc.message)
        self._started(new)
        return len(new)

    def _submission(self, row: st.ScheduleRow) -> dict[str, Any]:
        """The row's submission with its ``dag_spec`` text parsed once per definition (a fire
        then skips the YAML parser; the run stored is the same either way)."""
        key = runs_store.fingerprint(row.body)
        cached = self._parsed.get(row.seq)
        if cached is None or cached[0] != key:
            sub = dict(row.spec.submission)
            if isinstance(sub.get("dag_spec"), str):
                sub["dag_spec"] = load_spec_text(sub["dag_spec"])
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            cached = self._parsed[row.seq] = (key, sub)
        return cached[1]

    def _active(self, row: st.ScheduleRow) -> bool:
        if not row.last_run:
            return False
        run = runs_store.find_run(self.store, row.last_run, row.tenant_id)
        return run is not None and run.status in RUN_ACTIVE

    def runs_for(
        self, row: st.ScheduleRow, sids: list[str], now: float
    ) -> list[tuple[PipelineRun, list[str]]]:
        """The runs to store for ``sids``, each through the intake's checks (the first one
        checked; the others differ only in their ``submission_id``)."""
        body = fire_body(row.kind, row.name, self._submission(row), sids[0])
        check = self.p.checker(row.tenant_id, row.created_by)
        first, node_ids = accept(
            body,
            tenant_id=row.tenant_id,
            now=now,
            check=check,
            container_runtime=self.p.container_runtime,
        )
        out = [(first, node_ids)]
        for sid in sids[1:]:
            again = copy.deepcopy(first.body)
            again["runtime_params"]["submission_id"] = sid
            run = PipelineRun(
                run_id=f"pl-{uuid.uuid4().hex[:16]}",
                tenant_id=row.tenant_id,
                submission_id=sid,
                status=RUNNING,
                body=again,
                created_at=now,
                updated_at=now,
            )
            out.append((run, node_ids))
        return out

    def _started(self, runs: list[PipelineRun]) -> None:
        for run in runs:
            self.p.controller.touch(run.run_id)
        self.fires += len(runs)
        if runs:
            self.p.s.wake()

    def handle_event(self, event: dict[str, Any]) -> list[dict[str, Optional[str]]]:
        """Fire every matching trigger of the event's tenant, and mark it handled, in one
        transaction; what each trigger did."""
        now = self.clock()
        fires: list[tuple[st.ScheduleRow, Optional[tuple[PipelineRun, list[str]]], Optional[str]]] = []
        for trig in st.triggers_for(self.store, event["tenant_id"], event["type"]):
            spec = trig.spec
            if not isinstance(spec, TriggerSpec) or not matches(spec, event["type"], event["labels"]):
                continue
            sid = f"{trig.name}-ev{event['public_id']}"
            try:
                run = self.runs_for(trig, [sid], now)[0]
                known = runs_store.find_run(self.store, sid, trig.tenant_id)
                if known is not None and runs_store.fingerprint(known.body) != runs_store.fingerprint(
                    run[0].body
                ):
                    raise Conflict(f"submission_id {sid!r} is already used by another run")
                fires.append((trig, run, None))
            except OrionError as exc:
                fires.append((trig, None, exc.message))
        new = st.commit_event(self.store, event["id"], fires, now=now)
        self._started(new)
        return [
            {"trigger": t.name, "submission_id": r[0].submission_id if r else None, "error": e}
            for t, r, e in fires
        ]

    # -- the service's calls -----------------------------------------------------------------------
    def call(
        self, op: str, args: dict[str, Any], tenant_id: Optional[str], who: Optional[str]
    ) -> dict[str, Any]:
        """``schedule_call``: ``op`` is ``<schedule|trigger>_<create|list|get|pause|resume|delete>``,
        ``schedule_backfill`` or ``event_post``. ``tenant_id`` None: an admin (every tenant)."""
        who = who or tenant_id or "admin"
        now = self.clock()
        noun, _, verb = op.partition("_")
        if op == "event_post":
            return self.post_event(args.get("body"), tenant_id or "default", who)
        if noun not in ("schedule", "trigger"):
            raise ValidationError(f"unknown call {op[:64]!r}", [{"field": "op", "problem": "unknown"}])
        kind = "cron" if noun == "schedule" else "event"
        if verb == "create":
            return self.create(kind, args.get("body"), tenant_id or "default", who)
        if verb == "list":
            rows, nxt = st.listing(
                self.store, tenant_id, kind=kind, limit=int(args.get("limit", 100)), cursor=args.get("cursor")
            )
            return {"items": [r.public() for r in rows], "next_cursor": nxt}
        row = st.find(self.store, str(args.get("name", "")), tenant_id, kind=kind)
        if verb == "get":
            return row.public()
        if verb in ("pause", "resume"):
            fresh: dict[str, Any] = {}
            if verb == "resume" and kind == "cron":  # the pause's slots are passed over
                fresh = {"last_slot": now, "next_at": next_slot(st.cron_of(row), now)}
            return st.set_paused(self.store, row, paused=verb == "pause", who=who, now=now, **fresh).public()
        if verb == "delete":
            st.delete(self.store, row, who=who, now=now)
            return {"name": row.name, "tenant_id": row.tenant_id, "deleted": True}
        if verb == "backfill" and kind == "cron":
            return self.backfill(row, args.get("start"), args.get("end"), who, now)
        raise ValidationError(f"unknown call {op[:64]!r}", [{"field": "op", "problem": "unknown"}])

    def create(self, kind: str, body: Any, tenant_id: str, who: str) -> dict[str, Any]:
        """Validate a schedule or trigger (its submission through the intake, as a submit is) and
        store it."""
        spec = parse(ScheduleSpec if kind == "cron" else TriggerSpec, body)
        now = self.clock()
        created_by = "admin" if who == "admin" else tenant_id
        try:  # as it will fire (with its label and an id), so what a fire would refuse is a 422 now
            accept(
                fire_body(kind, spec.name, spec.submission, f"{spec.name}-check"),
                tenant_id=tenant_id,
                now=now,
                check=self.p.checker(tenant_id, created_by),
                container_runtime=self.p.container_runtime,
            )
        except OrionError as exc:
            exc.details = [
                {**d, "field": f"submission.{d.get('field', '')}".rstrip(".")} for d in exc.details
            ]
            raise
        row = st.ScheduleRow(
            seq=0,
            tenant_id=tenant_id,
            name=spec.name,
            kind=kind,
            event_type=spec.event_type if isinstance(spec, TriggerSpec) else None,
            body=spec.model_dump(mode="json"),
            created_by=created_by,
            paused=spec.paused,
            created_at=now,
            updated_at=now,
        )
        if isinstance(spec, ScheduleSpec):
            row.last_slot = now  # slots before its creation never fire
            row.next_at = next_slot(parse_cron(spec.cron, spec.timezone), now)
        got, created = st.create(self.store, row, who=who)
        if created:
            self.p.s.wake()
        return {**got.public(), "created": created}

    def backfill(self, row: st.ScheduleRow, start: Any, end: Any, who: str, now: float) -> dict[str, Any]:
        """Submit every slot in ``[start, end]`` (see ``when``), at most ``MAX_BACKFILL``;
        idempotent: a slot's run is the one its cron fire would be (the same id)."""
        zone = st.cron_of(row).timezone
        start, end = when("start", start, zone), when("end", end, zone)
        if start > end:
            raise ValidationError("start is after end", [{"field": "start", "problem": "after end"}])
        if end > now:
            raise ValidationError(
                "a backfill covers past slots (the schedule fires the others)",
                [{"field": "end", "problem": "in the future"}],
            )
        try:
            slots = backfill_slots(st.cron_of(row), float(start), float(end))
        except ValueError as exc:
            raise ValidationError(str(exc), [{"field": "end", "problem": str(exc)}]) from None
        sids = [f"{row.name}-{slot_name(s)}" for s in slots]
        runs = self.runs_for(row, sids, now) if sids else []
        for run, _ in runs:
            known = runs_store.find_run(self.store, run.submission_id, row.tenant_id)
            if known is not None and runs_store.fingerprint(known.body) != runs_store.fingerprint(run.body):
                raise Conflict(
                    f"submission_id {run.submission_id!r} is already used by another run",
                    [{"field": "start", "problem": "a slot's run id is taken"}],
                )
        new = st.commit_backfill(self.store, row, runs, who=who, now=now)
        self._started(new)
        return {"name": row.name, "slots": len(sids), "submitted": len(new), "submission_ids": sids}

    def post_event(self, body: Any, tenant_id: str, who: str) -> dict[str, Any]:
        """Store a tenant's event and fire its matching triggers now (a crash in between: the next
        tick does)."""
        event = parse(Event, body)
        at = self.clock()
        record = st.add_event(
            self.store, tenant_id=tenant_id, type_=event.type, labels=event.labels, at=at, source=who
        )
        event_id = record["public_id"]
        try:
            fired = self.handle_event(record)
        except Exception:
            log.exception("event %s: handling failed (the next tick retries)", event_id)
            return {"event_id": event_id, "type": event.type, "fired": [], "pending": True}
        return {"event_id": event_id, "type": event.type, "fired": fired, "pending": False}


def fire_body(kind: str, name: str, submission: dict[str, Any], submission_id: str) -> dict[str, Any]:
    """The submission a fire sends to the intake: the schedule's, with the run's id and the label
    naming what fired it (``orion.schedule`` or ``orion.trigger``)."""
    body = copy.deepcopy(submission)
    runtime = body.get("runtime_params")
    if runtime is None:
        runtime = {}
    if isinstance(runtime, dict):  # anything else: the intake names the field
        labels = runtime.get("labels")
        if labels is None or isinstance(labels, dict):
            label = "orion.schedule" if kind == "cron" else "orion.trigger"
            runtime["labels"] = {**(labels or {}), label: name}
        runtime["submission_id"] = submission_id
    body["runtime_params"] = runtime
    return body


def when(field: str, value: Any, timezone: str) -> float:
    """A backfill bound: epoch seconds, or ISO 8601 (``2026-12-01T00:00:00Z``; a time without an
    offset is read in the schedule's ``timezone``). 422 naming ``field`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value < 1e11:
            return float(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(timezone))
            if 0 <= moment.timestamp() < 1e11:  # 1970 to year 5138: what the slot names can write
                return moment.timestamp()
    raise ValidationError(
        f"{field}: a time as ISO 8601 ('2026-12-01T00:00:00Z') or epoch seconds",
        [{"field": field, "problem": "not a time"}],
    )
