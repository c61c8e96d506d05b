"""Schedules, triggers and events in the SQLite store (schema 6). A slot's fire (its run, and the
schedule's new ``last_slot`` and counters), an event's handling (the runs it fires, the triggers'
counters, ``handled``) and a backfill are each ONE transaction, so a crash leaves all or nothing
of them, and the runs' unique ``(tenant, submission_id)`` makes a repeat find the first run.

Like ``runs_store``, these functions work on a ``SQLiteStore`` (its connection, lock and
transaction); the API replica calls the reads on its read-only store.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ..errors import Conflict, NotFound
from ..input_limits import cap_text
from . import runs_store
from .cron import iso, parse_cron
from .records import PipelineRun
from .schedule_spec import ScheduleSpec, TriggerSpec, parse_definition

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore

_COLS = (
    "seq, tenant_id, name, kind, event_type, body, created_by, paused, created_at, updated_at, "
    "last_slot, next_at, last_run, fired, missed, skipped, last_error, last_skip"
)


@dataclass
class ScheduleRow:
    """One schedule (``kind`` cron) or trigger (``kind`` event) as stored."""

    seq: int
    tenant_id: str
    name: str
    kind: str
    event_type: Optional[str]
    body: dict[str, Any]
    created_by: str
    paused: bool
    created_at: float
    updated_at: float
    last_slot: Optional[float] = None
    next_at: Optional[float] = None
    last_run: Optional[str] = None
    fired: int = 0
    missed: int = 0
    skipped: int = 0
    last_error: Optional[str] = None
    last_skip: Optional[str] = None

    @property
    def spec(self) -> ScheduleSpec | TriggerSpec:
        return parse_definition(self.body)

    def public(self) -> dict[str, Any]:
        """What the API shows: the definition, its state and its counters."""
        out: dict[str, Any] = {
            **{k: v for k, v in self.body.items() if k != "submission"},
            "tenant_id": self.tenant_id,
            "paused": self.paused,
            "created_at": iso(self.created_at),
            "last_run": self.last_run,
            "fired": self.fired,
            "last_error": self.last_error,
        }
        if self.kind == "cron":
            spec = self.spec
            assert isinstance(spec, ScheduleSpec)
            out.update(
                last_slot=iso(self.last_slot),
                next_slot=None if self.paused else iso(self.next_at),
                missed=self.missed,
                skipped=self.skipped,
                last_skip=self.last_skip,
            )
        out["submission"] = self.body.get("submission")
        return out


def create(store: "SQLiteStore", row: ScheduleRow, *, who: str) -> tuple[ScheduleRow, bool]:
    """Store a schedule or trigger with an audit record: ``(row, True)``; the tenant's same name
    with the same definition: ``(the stored one, False)``; with another: ``Conflict`` (409)."""
    with store._lock, store._tx():
        found = _one(store, "WHERE tenant_id=? AND name=?", (row.tenant_id, row.name), locked=True)
        if found is not None:
            if found.body != row.body:
                raise Conflict(
                    f"the name {row.name!r} is already used by a {_noun(found.kind)} with another "
                    "definition: delete it first, or choose another name",
                    [{"field": "name", "problem": "in use"}],
                )
            return found, False
        cur = store._db.execute(
            "INSERT INTO pipeline_schedules(tenant_id, name, kind, event_type, body, created_by, "
            "paused, created_at, updated_at, last_slot, next_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.tenant_id,
                row.name,
                row.kind,
                row.event_type,
                json.dumps(row.body, sort_keys=True),
                row.created_by,
                int(row.paused),
                row.created_at,
                row.updated_at,
                row.last_slot,
                row.next_at,
            ),
        )
        row.seq = int(cur.lastrowid or 0)
        _audit(store, who, f"{_noun(row.kind)}_create", row, row.created_at)
    return row, True


def find(store: "SQLiteStore", name: str, tenant_id: Optional[str], *, kind: str) -> ScheduleRow:
    """The ``kind`` named ``name`` of the tenant (an admin, ``tenant_id`` None: the one of that
    name, 409 when two tenants use it); ``NotFound`` otherwise, as for another tenant's."""
    if tenant_id is None:
        rows = _many(store, "WHERE name=? AND kind=? ORDER BY seq LIMIT 2", (name, kind))
        if len(rows) > 1:
            raise Conflict(
                f"tenants {rows[0].tenant_id!r} and {rows[1].tenant_id!r} both have a "
                f"{_noun(kind)} {name!r}: pass ?tenant_id=",
                [{"field": "tenant_id", "problem": "needed: the name is ambiguous"}],
            )
        row = rows[0] if rows else None
    else:
        row = _one(store, "WHERE tenant_id=? AND name=? AND kind=?", (tenant_id, name, kind))
    if row is None:
        raise NotFound(f"no {_noun(kind)} {name[:64]!r}")
    return row


def listing(
    store: "SQLiteStore", tenant_id: Optional[str], *, kind: str, limit: int, cursor: Optional[int]
) -> tuple[list[ScheduleRow], Optional[int]]:
    """A tenant's (``None``: every tenant's) schedules or triggers by creation, and the cursor of
    the next page."""
    where, params = "WHERE kind=? AND seq>?", [kind, cursor or 0]
    if tenant_id is not None:
        where += " AND tenant_id=?"
        params.append(tenant_id)
    rows = _many(store, where + " ORDER BY seq LIMIT ?", (*params, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].seq if more and rows else None)


def set_paused(
    store: "SQLiteStore",
    row: ScheduleRow,
    *,
    paused: bool,
    who: str,
    now: float,
    last_slot: Optional[float] = None,
    next_at: Optional[float] = None,
) -> ScheduleRow:
    """Pause or resume (idempotent). A resumed schedule starts from ``last_slot``: the slots of the
    pause are passed over, not fired."""
    with store._lock, store._tx():
        if paused != row.paused:
            if paused:
                store._db.execute(
                    "UPDATE pipeline_schedules SET paused=1, updated_at=? WHERE seq=?", (now, row.seq)
                )
            else:
                store._db.execute(
                    "UPDATE pipeline_schedules SET paused=0, updated_at=?, last_slot=COALESCE(?, last_slot), "
                    "next_at=COALESCE(?, next_at) WHERE seq=?",
                    (now, last_slot, next_at, row.seq),
                )
            _audit(store, who, f"{_noun(row.kind)}_{'pause' if paused else 'resume'}", row, now)
    return _one(store, "WHERE seq=?", (row.seq,)) or row


def delete(store: "SQLiteStore", row: ScheduleRow, *, who: str, now: float) -> None:
    """Remove a schedule or trigger (the runs it fired stay)."""
    with store._lock, store._tx():
        store._db.execute("DELETE FROM pipeline_schedules WHERE seq=?", (row.seq,))
        _audit(store, who, f"{_noun(row.kind)}_delete", row, now)


def due(store: "SQLiteStore", now: float, limit: int = 200) -> list[ScheduleRow]:
    """Unpaused cron schedules whose next slot has come."""
    return _many(
        store, "WHERE kind='cron' AND paused=0 AND next_at<=? ORDER BY next_at LIMIT ?", (now, limit)
    )


def commit_slots(
    store: "SQLiteStore",
    row: ScheduleRow,
    *,
    runs: list[tuple[PipelineRun, list[str]]],
    last_slot: float,
    next_at: float,
    missed: int,
    skipped: int,
    last_skip: Optional[str],
    last_error: Optional[str],
    now: float,
) -> list[PipelineRun]:
    """A schedule's tick in ONE transaction: the runs its slots fire (a run already stored under
    its ``submission_id`` is found, not written again) and its new ``last_slot``, ``next_at`` and
    counters. Returns the runs newly stored."""
    new: list[PipelineRun] = []
    with store._lock, store._tx():
        for run, node_ids in runs:
            got, created = runs_store.insert_run(store, run, node_ids, who=f"schedule:{row.name}")
            if created:
                new.append(got)
        store._db.execute(
            "UPDATE pipeline_schedules SET last_slot=?, next_at=?, fired=fired+?, missed=missed+?, "
            "skipped=skipped+?, last_skip=COALESCE(?, last_skip), last_error=?, "
            "last_run=COALESCE(?, last_run), updated_at=? WHERE seq=?",
            (
                last_slot,
                next_at,
                len(runs),
                missed,
                skipped,
                cap_text(last_skip),
                cap_text(last_error),
                runs[-1][0].submission_id if runs else None,
                now,
                row.seq,
            ),
        )
    return new


def commit_backfill(
    store: "SQLiteStore", row: ScheduleRow, runs: list[tuple[PipelineRun, list[str]]], *, who: str, now: float
) -> list[PipelineRun]:
    """Every slot's run of a backfill in ONE transaction (those already stored are found); the
    runs newly stored."""
    new: list[PipelineRun] = []
    with store._lock, store._tx():
        for run, node_ids in runs:
            got, created = runs_store.insert_run(store, run, node_ids, who=who)
            if created:
                new.append(got)
        _audit(store, who, "schedule_backfill", row, now, slots=len(runs), new=len(new))
    return new


# -- events --------------------------------------------------------------------------------------------
def add_event(
    store: "SQLiteStore", *, tenant_id: str, type_: str, labels: dict[str, str], at: float, source: str
) -> dict[str, Any]:
    """Store a posted event, with an audit record (handled by the caller, or by the next tick
    after a crash); the event as ``pending_events`` gives it."""
    public_id = uuid.uuid4().hex[:12]
    with store._lock, store._tx():
        cur = store._db.execute(
            "INSERT INTO pipeline_events(public_id, tenant_id, type, labels, at, source) "
            "VALUES (?,?,?,?,?,?)",
            (public_id, tenant_id, type_, json.dumps(labels, sort_keys=True), at, source),
        )
        store._db.execute(
            "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
            (at, source, "event_post", type_, json.dumps({"tenant_id": tenant_id, "event_id": public_id})),
        )
    return {
        "id": int(cur.lastrowid or 0),
        "public_id": public_id,
        "tenant_id": tenant_id,
        "type": type_,
        "labels": labels,
        "at": at,
        "source": source,
    }


def pending_events(store: "SQLiteStore", limit: int = 100) -> list[dict[str, Any]]:
    """Events not handled yet, oldest first."""
    rows: list[tuple[Any, ...]] = list(
        store._query(
            "SELECT id, public_id, tenant_id, type, labels, at, source FROM pipeline_events WHERE handled=0 "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
    )
    return [
        {
            "id": r[0],
            "public_id": r[1],
            "tenant_id": r[2],
            "type": r[3],
            "labels": json.loads(r[4]),
            "at": r[5],
            "source": r[6],
        }
        for r in rows
    ]


def triggers_for(store: "SQLiteStore", tenant_id: str, event_type: str) -> list[ScheduleRow]:
    """The tenant's unpaused triggers of ``event_type``."""
    return _many(
        store,
        "WHERE kind='event' AND event_type=? AND tenant_id=? AND paused=0 ORDER BY seq",
        (event_type, tenant_id),
    )


def commit_event(
    store: "SQLiteStore",
    event_id: int,
    fires: list[tuple[ScheduleRow, Optional[tuple[PipelineRun, list[str]]], Optional[str]]],
    *,
    now: float,
) -> list[PipelineRun]:
    """An event's handling in ONE transaction: each matching trigger's run (or its error), the
    triggers' counters, and the event marked handled with what it fired. The runs newly stored."""
    new: list[PipelineRun] = []
    fired: list[dict[str, Optional[str]]] = []
    with store._lock, store._tx():
        for trig, run, error in fires:
            sid = None
            if run is not None:
                got, created = runs_store.insert_run(store, run[0], run[1], who=f"trigger:{trig.name}")
                sid = got.submission_id
                if created:
                    new.append(got)
            store._db.execute(
                "UPDATE pipeline_schedules SET fired=fired+?, last_run=COALESCE(?, last_run), "
                "last_error=?, updated_at=? WHERE seq=?",
                (int(sid is not None), sid, cap_text(error), now, trig.seq),
            )
            fired.append({"trigger": trig.name, "submission_id": sid, "error": cap_text(error)})
        store._db.execute(
            "UPDATE pipeline_events SET handled=1, fired=? WHERE id=?", (json.dumps(fired), event_id)
        )
    return new


def prune_events(store: "SQLiteStore", before: float) -> int:
    """Forget handled events older than ``before``; how many."""
    with store._lock, store._tx():
        cur = store._db.execute("DELETE FROM pipeline_events WHERE handled=1 AND at<?", (before,))
    return int(cur.rowcount or 0)


# -- rows ----------------------------------------------------------------------------------------------
def _noun(kind: str) -> str:
    return "schedule" if kind == "cron" else "trigger"


def _audit(store: "SQLiteStore", who: str, action: str, row: ScheduleRow, at: float, **extra: Any) -> None:
    store._db.execute(
        "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
        (at, who, action, row.name, json.dumps({"tenant_id": row.tenant_id, **extra})),
    )


def _one(
    store: "SQLiteStore", where: str, params: tuple[Any, ...], *, locked: bool = False
) -> Optional[ScheduleRow]:
    rows = _many(store, where, params, locked=locked)
    return rows[0] if rows else None


def _many(
    store: "SQLiteStore", where: str, params: tuple[Any, ...], *, locked: bool = False
) -> list[ScheduleRow]:
    """Rows for ``where`` (``locked``: inside the caller's transaction, which holds the lock)."""
    sql = f"SELECT {_COLS} FROM pipeline_schedules {where}"
    rows: list[tuple[Any, ...]] = list(
        store._db.execute(sql, params).fetchall() if locked else store._query(sql, params)
    )
    out = []
    for r in rows:
        (seq, tenant, name, kind, etype, body, by, paused, created, updated) = r[:10]
        out.append(
            ScheduleRow(
                seq,
                tenant,
                name,
                kind,
                etype,
                json.loads(body),
                by,
                bool(paused),
                created,
                updated,
                *r[10:],
            )
        )
    return out


def cron_of(row: ScheduleRow) -> Any:
    """The row's parsed cron (a schedule's)."""
    spec = row.spec
    assert isinstance(spec, ScheduleSpec)
    return parse_cron(spec.cron, spec.timezone)
