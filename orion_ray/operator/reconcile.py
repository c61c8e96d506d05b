"""One reconcile of an AIWorkload against Orion: read what Orion has, do at most one step, and
return the status to write. Kopf-free (``handlers.py`` wraps it), so it is tested with a fake API
as well as against a live Orion.

Idempotency: every record the operator asks Orion for has a key derived from the object's UID
(``metadata.request_id`` / ``submission_id`` ``k8s-<uid>``) or from its spec (a deployment is
``<model>--<version>``), so a crash between Orion's answer and the status write finds the same
record again instead of making a second one. Each pass returns right after a call that creates
something, so Orion's id is written to the status before any other effect.
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import Conflict, NotFound, OrionError
from . import mapping, serving_steps
from .orion_api import OrionApi
from .status import TERMINAL, condition, from_pipeline, from_workload, merge_conditions


class Reconciler:
    """``apply`` (create, resume, update, the timer) and ``delete`` for one object at a time."""

    def __init__(self, api: OrionApi, *, tenant_mode: str = "namespace"):
        self.api, self.tenant_mode = api, tenant_mode

    # -- the entry points --------------------------------------------------------------------------
    def apply(
        self, *, spec: dict[str, Any], meta: dict[str, Any], status: dict[str, Any], now: str
    ) -> dict[str, Any]:
        """The status after one step towards what ``spec`` asks (a refused spec is a status
        condition, never an exception: it would only be retried, and fail the same way)."""
        gen = meta.get("generation")
        cond: list[dict[str, Any]] = []
        try:
            form = mapping.form_of(spec)
            tenant = mapping.tenant_of(spec, meta.get("namespace") or "default", self.tenant_mode)
            if form == "serving":
                out = serving_steps.apply(self.api, spec=spec, meta=meta, status=status, tenant=tenant)
            else:
                out = self._batch(form, spec=spec, meta=meta, status=status, tenant=tenant)
            out.update(form=form, tenant=tenant)
            notes = out.pop("notes", ())
            cond.append(condition("Valid", True, "Accepted", generation=gen, now=now))
            cond.append(
                condition(
                    "FieldsNotApplied",
                    bool(notes),
                    "Recorded" if notes else "None",
                    "; ".join(notes),
                    generation=gen,
                    now=now,
                )
            )
        except mapping.SpecError as exc:
            out = {"phase": "Invalid", "message": str(exc)}
            cond.append(condition("Valid", False, "InvalidSpec", str(exc), generation=gen, now=now))
        except OrionError as exc:
            code = getattr(exc, "http_status", exc.status_code)
            if code not in (400, 403, 404, 409, 413, 422):
                raise  # Orion is down or busy: kopf retries with backoff
            out = {"phase": "Invalid" if code in (400, 413, 422) else "Refused"}
            out["message"] = f"Orion answered {code}: {exc}"[:1024]
            reason = "RefusedByOrion" if code != 403 else "Forbidden"
            cond.append(condition("Valid", False, reason, _details(exc), generation=gen, now=now))
        for kind, ok, reason, message in out.pop("events", ()):
            cond.append(condition(kind, ok, reason, message, generation=gen, now=now))
        out["conditions"] = merge_conditions(status.get("conditions") or [], cond)
        phase = out.get("phase") or "Unknown"
        ready = condition("Ready", phase in ("Ready", "Succeeded"), phase, generation=gen, now=now)
        out["conditions"] = merge_conditions(out["conditions"], [ready])
        if gen is not None:
            out["observedGeneration"] = gen
        return out

    def delete(self, *, spec: dict[str, Any], status: dict[str, Any], namespace: str, name: str) -> None:
        """Cancel or undeploy what the object made in Orion. A record already gone (404) is done;
        any other error is raised for the caller's bounded retry. Only records of the object's
        own tenant are touched: the status is data anyone allowed to write it could change, so
        an ``orionId`` naming another tenant's record is left alone."""
        orion_id = status.get("orionId")
        form = status.get("form")
        try:
            tenant = mapping.tenant_of(spec, namespace, self.tenant_mode)
        except mapping.SpecError:
            return  # never valid, so never submitted under this spec
        try:
            if form == "serving":
                model = spec.get("model") or name
                serving_steps.delete(self.api, model=model, status=status, tenant=tenant)
            elif orion_id and form in ("workload", "pipeline"):
                if self._raw(form, orion_id).get("tenant_id") == tenant:
                    self._cancel(form, orion_id)
        except NotFound:
            pass

    # -- batch: a workload or a pipeline -------------------------------------------------------------
    def _batch(
        self, form: str, *, spec: dict[str, Any], meta: dict[str, Any], status: dict[str, Any], tenant: str
    ) -> dict[str, Any]:
        orion_id = status.get("orionId")
        phase = status.get("phase")
        n = int(status.get("submissions") or 0)
        if spec.get("suspend"):
            if orion_id and phase not in TERMINAL and phase != "Suspended":
                self._cancel(form, orion_id)
            return {"phase": "Suspended" if phase not in TERMINAL else phase}
        if orion_id is None or phase == "Suspended":
            return self._submit(form, spec=spec, meta=meta, tenant=tenant, submission=n + 1)
        try:
            raw = self._raw(form, orion_id)
        except NotFound:
            if phase in TERMINAL:  # finished before its record went: nothing to run again
                ev = ("RecordMissing", False, "NotFoundInOrion", f"{orion_id} is no longer in Orion")
                return {"phase": phase, "events": [ev]}
            out = self._submit(form, spec=spec, meta=meta, tenant=tenant, submission=n + 1)
            out["recreations"] = int(status.get("recreations") or 0) + 1
            out["events"] = [("Recreated", True, "RecordMissing", f"{orion_id} was gone; resubmitted")]
            return out
        if raw.get("tenant_id") != tenant:
            why = f"status.orionId {orion_id} is not a record of tenant {tenant}"
            return {"phase": "Refused", "message": why, "events": [("Valid", False, "NotOwned", why)]}
        got = from_workload(raw) if form == "workload" else from_pipeline(raw)
        events = []
        if meta.get("generation") not in (None, status.get("observedGeneration"), 1):
            events.append(
                ("SpecApplied", False, "Immutable", "a submitted batch workload is not changed; re-create it")
            )
        return {**got, "events": events}

    def _submit(
        self, form: str, *, spec: dict[str, Any], meta: dict[str, Any], tenant: str, submission: int
    ) -> dict[str, Any]:
        key = mapping.request_key(meta["uid"], submission)
        if form == "workload":
            ack = self.api.submit_workload(mapping.workload_body(spec, tenant=tenant, key=key))
            orion_id, phase = ack["workload_id"], "Queued"
        else:
            ack = self.api.submit_pipeline(mapping.pipeline_body(spec, key=key), tenant)
            orion_id, phase = ack["submission_id"], "Running"
        return {"orionId": orion_id, "requestId": key, "submissions": submission, "phase": phase}

    def _raw(self, form: str, orion_id: str) -> dict[str, Any]:
        if form == "workload":
            return self.api.workload(orion_id)
        return self.api.pipeline(orion_id)

    def _cancel(self, form: str, orion_id: str) -> None:
        try:
            if form == "workload":
                self.api.cancel_workload(orion_id)
            else:
                self.api.cancel_pipeline(orion_id)
        except (NotFound, Conflict):
            pass


def _details(exc: OrionError) -> str:
    """Orion's error with the fields it names (``details``), for a condition's message."""
    details: Optional[list] = getattr(exc, "details", None)
    text = str(exc)
    if details:
        text += " (" + "; ".join(f"{d.get('field')}: {d.get('problem')}" for d in details[:5]) + ")"
    return text[:1024]
