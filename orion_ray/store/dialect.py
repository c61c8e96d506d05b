"""The one place where Orion's SQL meets PostgreSQL: the store and its users write SQLite's SQL
(``?`` placeholders, ``INSERT OR IGNORE``, ``json_extract``, SQLite's DDL and triggers), and
``translate`` turns each statement into PostgreSQL's. What cannot be rewritten mechanically (the
triggers of schemas 2 and 6, ``PRAGMA``) is written for PostgreSQL here, next to the name of the
SQLite statement it stands for, so both dialects of one statement live in one place.

Pure text: no driver import, so it is unit-tested without a server.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

# Tables whose first column is an identity: an INSERT gets ``RETURNING <column>``, the
# ``lastrowid`` SQLite gives for free.
IDENTITY = {
    "workloads": "seq",
    "transitions": "id",
    "audit": "id",
    "scaling_events": "id",
    "pipeline_runs": "seq",
    "pipeline_schedules": "seq",
    "pipeline_events": "id",
}
# ``INSERT OR REPLACE`` needs a conflict target in PostgreSQL: the table's primary key.
PRIMARY_KEYS = {"logs": ("workload_id",), "settings": ("name",)}
# ``json_extract`` is dynamically typed in SQLite; in PostgreSQL a path is either a number (these
# leaves: compared with and added to numbers) or text (every other leaf).
NUMERIC_LEAVES = frozenset(
    {"finished_at", "started_at", "submitted_at", "updated_at", "not_before", "ttl_days", "at"}
)
# Held by every write transaction for its length: PostgreSQL's stand-in for ``BEGIN IMMEDIATE``
# (one writer at a time per database, whichever process writes; readers never wait for it).
WRITE_LOCK_KEY = 0x4F52494F4E  # "ORION"
VERSION_TABLE = "schema_version"

# Functions the translated SQL calls (and schema 3's expression index uses: IMMUTABLE).
PRELUDE = [
    "CREATE OR REPLACE FUNCTION orion_json_num(doc TEXT, path TEXT[]) RETURNS DOUBLE PRECISION "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (doc::jsonb #>> path)::double precision $$",
    "CREATE OR REPLACE FUNCTION orion_json_text(doc TEXT, path TEXT[]) RETURNS TEXT "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT doc::jsonb #>> path $$",
    "CREATE OR REPLACE FUNCTION orion_event_id() RETURNS TEXT LANGUAGE sql VOLATILE AS "
    "$$ SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 12) $$",
]

_ENDED = "('completed', 'failed', 'cancelled')"


def _trigger(name: str, table: str, when: str, body: str, event: str) -> list[str]:
    """A plpgsql function and its row trigger (dropped first: ``CREATE OR REPLACE TRIGGER`` is
    PostgreSQL 14+)."""
    fn = f"orion_{name}"
    return [
        f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{body}\n"
        "RETURN NULL;\nEND\n$$",
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
        f"CREATE TRIGGER {name} {event} ON {table} FOR EACH ROW"
        + (f" WHEN ({when})" if when else "")
        + f" EXECUTE FUNCTION {fn}()",
    ]


# SQLite's triggers (schema.SCHEMA_2 and SCHEMA_6), by name, as PostgreSQL statements. A trigger's
# WHEN cannot hold a subquery in PostgreSQL: the EXISTS moves into the function's body.
TRIGGERS: dict[str, list[str]] = {
    "workloads_count_insert": _trigger(
        "workloads_count_insert",
        "workloads",
        f"NEW.status NOT IN {_ENDED}",
        "INSERT INTO active_counts(tenant_id, n) VALUES (NEW.tenant_id, 1)\n"
        "    ON CONFLICT (tenant_id) DO UPDATE SET n = active_counts.n + 1;",
        "AFTER INSERT",
    ),
    "workloads_count_update": _trigger(
        "workloads_count_update",
        "workloads",
        f"(OLD.status IN {_ENDED}) IS DISTINCT FROM (NEW.status IN {_ENDED})",
        "INSERT INTO active_counts(tenant_id, n)\n"
        f"    VALUES (NEW.tenant_id, CASE WHEN NEW.status IN {_ENDED} THEN -1 ELSE 1 END)\n"
        "    ON CONFLICT (tenant_id) DO UPDATE SET n = active_counts.n + excluded.n;",
        "AFTER UPDATE OF status",
    ),
    "workloads_queue_insert": _trigger(
        "workloads_queue_insert",
        "workloads",
        "NEW.status = 'queued'",
        "INSERT INTO queue_buckets(rank, bucket, n) VALUES (NEW.rank, NEW.seq / 256, 1)\n"
        "    ON CONFLICT (rank, bucket) DO UPDATE SET n = queue_buckets.n + 1;",
        "AFTER INSERT",
    ),
    "workloads_queue_update": _trigger(
        "workloads_queue_update",
        "workloads",
        "(OLD.status = 'queued') IS DISTINCT FROM (NEW.status = 'queued')",
        "INSERT INTO queue_buckets(rank, bucket, n)\n"
        "    VALUES (NEW.rank, NEW.seq / 256, CASE WHEN NEW.status = 'queued' THEN 1 ELSE -1 END)\n"
        "    ON CONFLICT (rank, bucket) DO UPDATE SET n = queue_buckets.n + excluded.n;\n"
        "DELETE FROM queue_buckets WHERE rank = NEW.rank AND bucket = NEW.seq / 256 AND n = 0;",
        "AFTER UPDATE OF status",
    ),
    "pipeline_run_ended": _trigger(
        "pipeline_run_ended",
        "pipeline_runs",
        "NEW.status IN ('succeeded', 'failed') AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')",
        "IF EXISTS (SELECT 1 FROM pipeline_schedules s\n"
        "           WHERE s.kind = 'event' AND s.tenant_id = NEW.tenant_id\n"
        "           AND s.event_type = (CASE NEW.status WHEN 'succeeded' THEN 'pipeline.completed'\n"
        "                               ELSE 'pipeline.failed' END)) THEN\n"
        "  INSERT INTO pipeline_events(public_id, tenant_id, type, labels, at, source) VALUES (\n"
        "    orion_event_id(), NEW.tenant_id,\n"
        "    CASE NEW.status WHEN 'succeeded' THEN 'pipeline.completed' ELSE 'pipeline.failed' END,\n"
        "    jsonb_build_object('pipeline_id', NEW.body::jsonb #> '{dag_spec,pipeline_id}',\n"
        "                       'submission_id', NEW.submission_id, 'tenant', NEW.tenant_id)::text,\n"
        "    COALESCE(NEW.finished_at, NEW.updated_at), 'orion');\n"
        "END IF;",
        "AFTER UPDATE OF status",
    ),
    "workload_ended": _trigger(
        "workload_ended",
        "transitions",
        "NEW.status IN ('completed', 'failed')",
        "IF EXISTS (SELECT 1 FROM pipeline_schedules s WHERE s.kind = 'event'\n"
        "           AND s.event_type = 'workload.' || NEW.status\n"
        "           AND s.tenant_id = (SELECT tenant_id FROM workloads\n"
        "                              WHERE workload_id = NEW.workload_id)) THEN\n"
        "  INSERT INTO pipeline_events(public_id, tenant_id, type, labels, at, source)\n"
        "  SELECT orion_event_id(), w.tenant_id, 'workload.' || NEW.status,\n"
        "         (CASE WHEN jsonb_typeof(w.spec::jsonb #> '{metadata,labels}') = 'object'\n"
        "               THEN w.spec::jsonb #> '{metadata,labels}' ELSE '{}'::jsonb END\n"
        "          || jsonb_build_object('workload_id', w.workload_id, 'tenant', w.tenant_id))::text,\n"
        "         NEW.at, 'orion'\n"
        "  FROM workloads w WHERE w.workload_id = NEW.workload_id;\n"
        "END IF;",
        "AFTER INSERT",
    ),
}

_TRIGGER = re.compile(r"^\s*CREATE\s+TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.([\w.]+)'\s*\)")
_JSON_SET = re.compile(r"json_set\(\s*(\w+)\s*,\s*'\$\.(\w+)'\s*,\s*\?\s*\)")
_SCALAR_MINMAX = re.compile(r"\b(MAX|MIN)\(([^(),]+),([^(),]+)\)")
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.I)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_PRAGMA = re.compile(r"^\s*PRAGMA\s+(\w+)\s*(?:\(\s*(\w+)\s*\)|=\s*(\w+))?\s*;?\s*$", re.I)


SCRIPT_SEP = "\n-- orion: next statement --\n"


def is_script(text: str) -> bool:
    """Whether ``translate`` made several statements of one (a trigger: its function, then it)."""
    return SCRIPT_SEP in text


def statements(text: str) -> list[str]:
    """The statements of a script ``translate`` made."""
    return text.split(SCRIPT_SEP)


class Pragma:
    """A ``PRAGMA`` statement, which the connection answers itself (``name``, its argument)."""

    def __init__(self, name: str, arg: Optional[str]):
        self.name, self.arg = name.lower(), arg


def pragma(sql: str) -> Optional[Pragma]:
    """The ``PRAGMA`` in ``sql``, if it is one."""
    m = _PRAGMA.match(sql)
    if m is None:
        return None
    return Pragma(m.group(1), m.group(2) or m.group(3))


@lru_cache(maxsize=2048)
def translate(sql: str, *, many: bool = False) -> tuple[str, Optional[str]]:
    """``sql`` (SQLite's) as PostgreSQL's, and the identity column the statement returns (an
    INSERT into a table with one, so ``lastrowid`` works; never for ``executemany``)."""
    trig = _TRIGGER.match(sql)
    if trig is not None:
        return SCRIPT_SEP.join(TRIGGERS[trig.group(1)]), None
    text = sql.strip().rstrip(";")
    upper = text.lstrip().upper()
    if upper.startswith("CREATE TABLE") or upper.startswith("ALTER TABLE"):
        text = _ddl(text)
    text = _JSON_EXTRACT.sub(_json_path, text)
    text = _JSON_SET.sub(r"(\1::jsonb || jsonb_build_object('\2', ?::text))::text", text)
    text = re.sub(r"\s+INDEXED\s+BY\s+\w+", "", text)
    # SQLite's CROSS JOIN … ON fixes the join order; PostgreSQL's planner chooses its own
    text = re.sub(r"\bCROSS\s+JOIN\s+(\w+(?:\s+\w+)?)\s+ON\b", r"JOIN \1 ON", text)
    text = _SCALAR_MINMAX.sub(
        lambda m: ("GREATEST" if m.group(1) == "MAX" else "LEAST") + m.group(0)[3:], text
    )
    text = re.sub(r"\bIS\s+\?", "IS NOT DISTINCT FROM ?", text)
    returning = None
    m = _INSERT_OR.match(text)
    if m is not None:
        how, table, cols = m.group(1).upper(), m.group(2), [c.strip() for c in m.group(3).split(",")]
        text = "INSERT INTO" + text[m.start(2) - 1 :]
        if how == "IGNORE":
            text += " ON CONFLICT DO NOTHING"
        else:
            key = PRIMARY_KEYS.get(table, (cols[0],))
            sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
            text += f" ON CONFLICT ({', '.join(key)}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
    else:
        ins = _INSERT_INTO.match(text)
        if ins is not None and not many and "RETURNING" not in text.upper():
            returning = IDENTITY.get(ins.group(1))
            if returning:
                text += f" RETURNING {returning}"
    return _placeholders(text), returning


def _ddl(text: str) -> str:
    """SQLite's column types as PostgreSQL's: 64-bit integers, double-precision reals, identities."""
    text = re.sub(
        r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        text,
        flags=re.I,
    )
    text = re.sub(r"\bINTEGER\b", "BIGINT", text)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)


def _json_path(m: re.Match) -> str:
    col, path = m.group(1), m.group(2).split(".")
    fn = "orion_json_num" if path[-1] in NUMERIC_LEAVES else "orion_json_text"
    return f"{fn}({col}, '{{{','.join(path)}}}')"


def _placeholders(sql: str) -> str:
    """``?`` → ``%s`` and a literal ``%`` → ``%%``, outside quoted strings and dollar-quoted
    bodies."""
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and (j + 1 >= n or sql[j + 1] != "'"):
                    break
                j += 2 if sql[j] == "'" else 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if c == "$" and sql.startswith("$$", i):
            j = sql.find("$$", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        out.append("%s" if c == "?" else "%%" if c == "%" else c)
        i += 1
    return "".join(out)
