"""The pipeline spec users write (issue 16), parsed and validated. Pure: no Ray, no FastAPI.

A spec is a DAG of nodes joined by edges; each node names a kind, its ``params``, ``env``,
``ins`` and ``outs``, and optionally its resources. ``parse_submission`` takes the body of
``POST /api/orch/submit`` (``dag_spec`` as YAML text or as an object, ``runtime_params``,
``refs``) and returns a ``Submission`` or raises the contract's ``ValidationError`` (422) whose
details name each field and the reason. The graph rules (duplicate ids, unknown edge ends,
cycles, unbound inputs) are in ``graph.py``; the installed kinds in ``kinds.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ValidationError, pydantic_details
from ..input_limits import LimitError, check_value
from ..models import Metadata, Priority, Resources
from . import graph, kinds, mapspec

MAX_NODES = 1_000  # nodes of one pipeline unless the caller allows more
MAX_EDGES_PER_NODE = 100  # edges ≤ nodes × this
MAX_SPEC_CHARS = 1_048_576  # YAML text (the API's body limit is the same)
MAX_PORTS = 64  # ins / outs of one node
ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"  # no '/': node ids are parts of request ids
PORT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # an input is a keyword argument: an identifier
SUBMISSION_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# params keys with a meaning to Orion (they are not passed to the function)
RESERVED_PARAMS = ("function", "entrypoint")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_RUNTIME_S = 30 * 86400


def parse_duration(value: Union[str, int, float]) -> float:
    """Seconds in ``value``: a number of seconds, or a text such as ``"90s"``, ``"15m"``, ``"2h"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text such as '2h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError("a duration is a number of seconds or a text such as '90s', '15m', '2h', '1d'")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_RUNTIME_S:
        raise ValueError(f"a duration must be above 0 and at most {MAX_RUNTIME_S} s (30 days)")
    return seconds


class Retry(BaseModel):
    """``slo.retry`` (and a node's own ``retry``): attempts in all, and the wait between them.
    ``max_attempts`` counts the node's own (user) failures; system failures are retried apart,
    up to ``max_system_failures`` (see ``failures.py``)."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(1, ge=1, le=100)
    backoff_sec: float = Field(0.0, ge=0, le=86400, allow_inf_nan=False)
    max_system_failures: int = Field(3, ge=0, le=100)


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_runtime: Optional[float] = None  # seconds; written as "2h" or a number
    retry: Retry = Field(default_factory=Retry)
    priority: Priority = Priority.NORMAL
    qos: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")  # e.g. spot_ok; recorded only
    fail_fast: bool = False  # the first node failed for good stops the run (failures.py)

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _runtime(cls, v: Any) -> Optional[float]:
        return None if v is None else parse_duration(v)


class NodeResources(BaseModel):
    """A node's resources as the spec writes them (``cpu: "4"``, ``mem: "16Gi"``, ``gpu: 1``)."""

    model_config = ConfigDict(extra="forbid")
    cpu: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    gpu: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    mem: Optional[Union[int, str]] = None
    memory: Optional[Union[int, str]] = None  # the workload spec's name for ``mem``
    gpu_type: Optional[str] = None
    custom: dict[str, float] = Field(default_factory=dict)

    def merged_over(self, default: Optional[NodeResources]) -> Resources:
        """The workload bundle: this node's values over the pipeline's default."""
        base = default.model_dump(exclude_none=True, exclude_defaults=True) if default else {}
        mine = self.model_dump(exclude_none=True, exclude_defaults=True)
        if "mem" in mine or "memory" in mine:  # a node's own memory replaces the default's, either spelling
            base.pop("mem", None)
            base.pop("memory", None)
        merged = {**base, **mine}
        memory = merged.pop("mem", None)
        memory = merged.pop("memory", memory)
        if memory is not None:
            merged["memory"] = memory
        return Resources.model_validate(merged)


class PipelineResources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: Optional[NodeResources] = None


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    ins: list[str] = Field(default_factory=list, max_length=MAX_PORTS)
    outs: list[str] = Field(default_factory=list, max_length=MAX_PORTS)
    resources: Optional[NodeResources] = None
    entrypoint: Optional[str] = Field(None, min_length=1, max_length=65536)
    retry: Optional[Retry] = None  # overrides slo.retry for this node
    timeout_s: Optional[float] = Field(None, gt=0, le=MAX_RUNTIME_S, allow_inf_nan=False)
    map: Optional[mapspec.MapSpec] = None  # fan-out, for a node of kind ``map`` (mapspec.py)

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, v: Any) -> Any:
        if v is None:  # YAML ``params:`` with nothing after it
            return {}
        if isinstance(v, dict):
            try:
                check_value(v, "params")
            except LimitError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @field_validator("ins", "outs")
    @classmethod
    def _ports(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(PORT_PATTERN, name):
                raise ValueError(f"{name[:64]!r} is not a name (letters, digits, '_'; not first a digit)")
        if len(set(v)) != len(v):
            raise ValueError("a name is listed twice")
        return v

    def function(self, refs: dict[str, str]) -> Optional[str]:
        """The function this node runs: ``refs[id]``, else ``params.function``."""
        fn = refs.get(self.id) or self.params.get("function")
        return fn if isinstance(fn, str) else None

    def command(self) -> Optional[str]:
        """The shell entrypoint this node runs: ``entrypoint``, else ``params.entrypoint``."""
        cmd = self.entrypoint or self.params.get("entrypoint")
        return cmd if isinstance(cmd, str) else None

    def call_params(self) -> dict[str, Any]:
        """The params passed to the function as keyword arguments (Orion's own keys left out)."""
        return {k: v for k, v in self.params.items() if k not in RESERVED_PARAMS}


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from", max_length=64)
    target: str = Field(alias="to", max_length=64)


class PipelineSpec(BaseModel):
    """The DAG (``dag_spec``)."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1, le=1)
    pipeline_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
    slo: Slo = Field(default_factory=Slo)
    resources: PipelineResources = Field(default_factory=PipelineResources)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def upstream(self) -> dict[str, list[str]]:
        """Each node's direct upstream nodes, in edge order."""
        up: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            up[e.target].append(e.source)
        return up


class RuntimeParams(BaseModel):
    """Per-submission parameters (``runtime_params``)."""

    model_config = ConfigDict(extra="forbid")
    submission_id: Optional[str] = Field(None, pattern=SUBMISSION_PATTERN)  # idempotency, per tenant
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    secrets_scope: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.\-/]{1,128}$")  # recorded only
    priority: Optional[Priority] = None  # over slo.priority
    affinity: dict[str, str] = Field(default_factory=dict)  # recorded only (e.g. compute_pool)
    ttl_days: Optional[int] = Field(None, ge=1, le=3650)
    fail_fast: Optional[bool] = None  # over slo.fail_fast

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return Metadata._labels(v)  # the workloads' label bounds

    @field_validator("affinity")
    @classmethod
    def _affinity(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 16 or any(len(k) > 128 or len(x) > 256 for k, x in v.items()):
            raise ValueError("at most 16 entries, keys ≤ 128 and values ≤ 256 characters")
        return v


class Submission(BaseModel):
    """A validated ``POST /api/orch/submit`` body."""

    model_config = ConfigDict(extra="forbid")
    dag_spec: PipelineSpec
    runtime_params: RuntimeParams = Field(default_factory=RuntimeParams)
    refs: dict[str, str] = Field(default_factory=dict)  # node id → "module:function"

    def priority(self) -> Priority:
        return self.runtime_params.priority or self.dag_spec.slo.priority

    def retry_of(self, node: Node) -> Retry:
        return node.retry or self.dag_spec.slo.retry


def _check_env(v: dict[str, str]) -> dict[str, str]:
    if len(v) > 256:
        raise ValueError("at most 256 variables")
    for name, value in v.items():
        if not re.match(ENV_NAME_PATTERN, name):
            raise ValueError(f"{name[:64]!r} is not a variable name")
        if len(value) > 65536:
            raise ValueError(f"{name!r} is longer than 65536 characters")
    return v


def load_spec_text(text: str) -> Any:
    """YAML (JSON is YAML) text → a value; a 422 on ``dag_spec`` when it cannot be read."""
    if len(text) > MAX_SPEC_CHARS:
        raise ValidationError(
            "dag_spec is too large", [{"field": "dag_spec", "problem": f"over {MAX_SPEC_CHARS} characters"}]
        )
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = str(getattr(exc, "problem", None) or "not valid YAML or JSON")
        raise ValidationError(
            "dag_spec is not valid YAML", [{"field": "dag_spec", "problem": problem + at}]
        ) from None
    except RecursionError:
        raise ValidationError(
            "dag_spec is nested too deep", [{"field": "dag_spec", "problem": "too deep"}]
        ) from None


def parse_submission(
    body: Any, *, max_nodes: int = MAX_NODES, installed: Optional[tuple[str, ...]] = None
) -> Submission:
    """A validated submission, or ``ValidationError`` (422) naming every field at fault.

    ``installed`` are the node kinds this Orion runs (default: built-ins and the entry-point
    group ``orion.pipeline_kinds``)."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be an object", [{"field": "", "problem": "not an object"}])
    body = dict(body)
    if isinstance(body.get("dag_spec"), str):
        body["dag_spec"] = load_spec_text(body["dag_spec"])
    spec = body.get("dag_spec")
    if isinstance(spec, dict) and isinstance(spec.get("nodes"), list) and len(spec["nodes"]) > max_nodes:
        raise ValidationError(
            "too many nodes",
            [{"field": "dag_spec.nodes", "problem": f"{len(spec['nodes'])} nodes; at most {max_nodes}"}],
        )
    if isinstance(spec, dict) and isinstance(spec.get("edges"), list):
        if len(spec["edges"]) > max_nodes * MAX_EDGES_PER_NODE:
            raise ValidationError(
                "too many edges",
                [{"field": "dag_spec.edges", "problem": f"at most {max_nodes * MAX_EDGES_PER_NODE}"}],
            )
    try:
        sub = Submission.model_validate(body)
    except ValidationError:
        raise
    except Exception as exc:  # pydantic's error → the contract's
        raise ValidationError("invalid pipeline spec", pydantic_details(exc)) from None
    problems = graph.problems(sub.dag_spec) + kinds.problems(sub.dag_spec, installed)
    problems += _ref_problems(sub) + mapspec.problems(sub)
    if problems:
        raise ValidationError(problems[0]["problem"], problems)
    return sub


def _ref_problems(sub: Submission) -> list[dict[str, str]]:
    ids = {n.id for n in sub.dag_spec.nodes}
    out = []
    for node_id, ref in sub.refs.items():
        if node_id not in ids:
            out.append({"field": f"refs.{node_id[:64]}", "problem": "no node has this id"})
        elif not isinstance(ref, str) or not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", ref):
            out.append({"field": f"refs.{node_id}", "problem": "a function as 'package.module:function'"})
    for n in sub.dag_spec.nodes:
        overlap = sorted(set(n.ins) & set(n.call_params()))
        if overlap:
            out.append(
                {
                    "field": f"dag_spec.nodes.{n.id}.params.{overlap[0]}",
                    "problem": "also an input of this node: a keyword argument cannot have two values",
                }
            )
    return out
