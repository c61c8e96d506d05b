"""OpenLineage RunEvents of a pipeline run (``GET /api/orch/lineage/{submission_id}``). Pure.

One job per pipeline (``namespace`` ``orion://<tenant>``, ``name`` the ``pipeline_id``) and one
per node (``name`` ``<pipeline_id>.<node_id>``). The run itself has a ``START`` at its creation
and, once it ended, a ``COMPLETE`` (succeeded), ``FAIL`` (failed) or ``ABORT`` (cancelled). Each
node that ran (was launched at least once) has a ``START`` at its first launch and, once it
ended, ``COMPLETE``/``FAIL``/``ABORT``, with the ``parent`` run facet naming the pipeline run.
A node's ``ins`` are its input datasets and its ``outs`` its output datasets, in the namespace
``orion://<tenant>/<submission_id>`` and named after the value (the producing node's out), so a
lineage tool joins a node's output to the inputs that read it. Run ids are UUIDs derived from
the run's id (and the node's), so the same run always gives the same ids.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from .._version import __version__
from ..models import iso
from .records import CANCELLED, FAILED, SKIPPED, SUCCEEDED, NodeRun, PipelineRun

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PARENT_SCHEMA_URL = "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet"
PRODUCER = f"urn:orion-ray:pipelines:{__version__}"  # a URI naming Orion and its version
_ENDS = {SUCCEEDED: "COMPLETE", FAILED: "FAIL", CANCELLED: "ABORT"}
_NS = uuid.UUID("5b3c4a52-8f0e-4c55-9a3e-0a7b1f0c9e11")  # Orion's namespace for derived run ids


def run_uuid(run_id: str, node_id: Optional[str] = None) -> str:
    """The OpenLineage ``runId`` of a pipeline run (or of one of its nodes)."""
    return str(uuid.uuid5(_NS, run_id if node_id is None else f"{run_id}/{node_id}"))


def events(run: PipelineRun, nodes: list[NodeRun]) -> list[dict[str, Any]]:
    """The run's events, oldest first: the run's START, each node's START and end, the run's end."""
    spec = run.submission.dag_spec
    job_ns = f"orion://{run.tenant_id}"
    data_ns = f"orion://{run.tenant_id}/{run.submission_id}"
    parent_job = {"namespace": job_ns, "name": spec.pipeline_id}
    parent_run = run_uuid(run.run_id)
    out: list[tuple[float, int, dict[str, Any]]] = []

    def event(kind: str, at: float, run_id: str, job: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "eventType": kind,
            "eventTime": iso(at),
            "run": {"runId": run_id, **extra.pop("run_extra", {})},
            "job": job,
            "inputs": extra.get("inputs", []),
            "outputs": extra.get("outputs", []),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
        }

    out.append((run.created_at, 0, event("START", run.created_at, parent_run, parent_job)))
    parent_facet = {
        "parent": {
            "_producer": PRODUCER,
            "_schemaURL": PARENT_SCHEMA_URL,
            "run": {"runId": parent_run},
            "job": parent_job,
        }
    }
    by_id = {n.id: n for n in spec.nodes}
    for n in nodes:
        if n.started_at is None or n.node_id not in by_id:
            continue  # never launched (or skipped): nothing ran
        node = by_id[n.node_id]
        job = {"namespace": job_ns, "name": f"{spec.pipeline_id}.{n.node_id}"}
        rid = run_uuid(run.run_id, n.node_id)
        sets = {
            "inputs": [{"namespace": data_ns, "name": name} for name in node.ins],
            "outputs": [{"namespace": data_ns, "name": name} for name in node.outs],
        }
        facets = {"facets": parent_facet}
        out.append((n.started_at, 2, event("START", n.started_at, rid, job, run_extra=facets, **sets)))
        end = _ENDS.get(n.status)
        if end is not None and n.finished_at is not None:
            if end != "COMPLETE":
                sets["outputs"] = []  # it produced nothing
            # at the same time, a node's end comes before the starts it let happen (not its own)
            order = 1 if n.finished_at > n.started_at else 3
            out.append((n.finished_at, order, event(end, n.finished_at, rid, job, run_extra=facets, **sets)))
    end = _ENDS.get(run.status)
    if end is not None and run.finished_at is not None:
        out.append((run.finished_at, 4, event(end, run.finished_at, parent_run, parent_job)))
    out.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in out]


def lineage_body(run: PipelineRun, nodes: list[NodeRun]) -> dict[str, Any]:
    """``GET /api/orch/lineage/{submission_id}``: ``{submission_id, state, events}``."""
    skipped = [n.node_id for n in nodes if n.status == SKIPPED]
    return {
        "submission_id": run.submission_id,
        "state": run.status,
        "run_id": run_uuid(run.run_id),
        "skipped": skipped,
        "events": events(run, nodes),
    }
