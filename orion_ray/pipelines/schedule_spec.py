"""What a tenant writes to schedule pipeline runs (docs/pipelines-schedules.md). Pure: no Ray, no
FastAPI, no clock.

A **schedule** (as a Kubernetes CronJob) is a pipeline submission — the very body of
``POST /api/orch/submit`` under ``submission`` — with a ``cron`` expression, its ``timezone``, a
``concurrency_policy``, a ``starting_deadline_seconds`` and ``catch_up``. A **trigger** (as an Argo
Events sensor) is the same submission fired by an event: its ``event_type`` and a label selector
``match_labels`` (equality on every key it names). Schedules and triggers share one name space per
tenant: a run's ``submission_id`` starts with the name that fired it.

An **event** is ``{type, labels}``: posted by a tenant (``POST /api/orch/events``), or one of
Orion's own (``BUILTIN_TYPES``) when a pipeline run or a workload ends.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ValidationError, pydantic_details
from .cron import parse_cron

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"  # the prefix of every run it fires
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$"
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_DEADLINE_S = 30 * 86400
BUILTIN_TYPES = ("pipeline.completed", "pipeline.failed", "workload.completed", "workload.failed")
RESERVED_PREFIXES = ("pipeline.", "workload.", "orion.")  # Orion's own events: not postable


def _labels(v: dict[str, str], field: str) -> dict[str, str]:
    import re

    if len(v) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for k, val in v.items():
        if not re.match(LABEL_KEY_PATTERN, k):
            raise ValueError(f"{field} key {k[:64]!r}: letters, digits, '_', '.', '-', '/'; at most 128")
        if not isinstance(val, str) or len(val) > MAX_LABEL_VALUE:
            raise ValueError(f"{field}.{k}: a text of at most {MAX_LABEL_VALUE} characters")
    return v


class _Fired(BaseModel):
    """What schedules and triggers have in common: a name and the submission they fire."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., pattern=NAME_PATTERN)
    paused: bool = False
    submission: dict[str, Any] = Field(
        ..., description="the body of POST /api/orch/submit: {dag_spec, runtime_params, refs}"
    )

    @field_validator("submission")
    @classmethod
    def _submission(cls, v: dict[str, Any]) -> dict[str, Any]:
        runtime = v.get("runtime_params")
        if isinstance(runtime, dict) and runtime.get("submission_id") is not None:
            raise ValueError(
                "runtime_params.submission_id: each run gets its own ('<name>-<slot>' or "
                "'<name>-ev<event id>'); leave it out"
            )
        return v


class ScheduleSpec(_Fired):
    """``POST /api/orch/schedules``: a pipeline submission fired at each cron slot."""

    kind: Literal["cron"] = "cron"
    cron: str = Field(..., max_length=256)
    timezone: str = Field("UTC", max_length=64)
    concurrency_policy: Literal["allow", "forbid", "replace"] = "allow"
    starting_deadline_seconds: Optional[int] = Field(None, ge=1, le=MAX_DEADLINE_S)
    catch_up: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            parse_cron("* * * * *", v)
        except LookupError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        parse_cron(v)  # ValueError names the problem
        return " ".join(v.split())


class TriggerSpec(_Fired):
    """``POST /api/orch/triggers``: a pipeline submission fired by each matching event."""

    kind: Literal["event"] = "event"
    event_type: str = Field(..., pattern=TYPE_PATTERN)
    match_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("match_labels")
    @classmethod
    def _match(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v, "match_labels")


class Event(BaseModel):
    """``POST /api/orch/events``: a tenant's event (its type may not be one of Orion's own)."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(..., pattern=TYPE_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v.startswith(RESERVED_PREFIXES):
            raise ValueError(f"types starting with {', '.join(RESERVED_PREFIXES)} are Orion's own events")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v, "labels")


def parse(model: type[BaseModel], body: Any) -> Any:
    """``model`` validated from ``body``, or the contract's ``ValidationError`` (422) naming each
    field at fault."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be an object", [{"field": "", "problem": "not an object"}])
    try:
        return model.model_validate(body)
    except Exception as exc:  # pydantic's error → the contract's
        details = pydantic_details(exc)
        raise ValidationError(details[0]["problem"] if details else "invalid", details) from None


def matches(trigger: TriggerSpec, event_type: str, labels: dict[str, str]) -> bool:
    """Whether ``trigger`` fires for an event: the same type, and every label it selects equal
    (an empty selector selects every event of the type)."""
    if trigger.event_type != event_type:
        return False
    return all(labels.get(k) == v for k, v in trigger.match_labels.items())


def parse_definition(body: dict[str, Any]) -> ScheduleSpec | TriggerSpec:
    """A stored definition back (validated when it was accepted)."""
    if body.get("kind") == "event":
        return TriggerSpec.model_validate(body)
    return ScheduleSpec.model_validate(body)
