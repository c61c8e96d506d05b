"""A serving AIWorkload's steps through Orion's serving API: deploy, scale, roll a new version out
through a release, undeploy. One step per pass; the status carries where the rollout is.

``strategy: rolling`` is Orion's rolling release (``maxSurge``, ``maxUnavailable``,
``progressDeadline``; docs/serving-releases.md): the new version is created with one replica,
started once it is healthy, and Orion then sizes both versions until the new one is promoted (the
spec's replica count is applied after that, not during).

Status fields used: ``version`` (the version the spec asks for, deployed), ``previousVersions``
(older versions still deployed while a rollout moves traffic off them), ``orionId``
(``<model>--<version>``).
"""

from __future__ import annotations

from typing import Any

from ..errors import Conflict, NotFound, ValidationError
from . import mapping
from .orion_api import OrionApi
from .status import from_deployment

DONE_PHASES = ("promoted",)


def _create_or_adopt(api: OrionApi, dep: dict[str, Any]) -> None:
    """Create the deployment; one that exists with the same owner is ours (an earlier pass made
    it and did not live to write the status), one of another owner is a conflict."""
    try:
        api.create_deployment(dep)
    except Conflict as conflict:
        dep_id = f"{dep['model_id']}--{dep['version']}"
        try:
            got = api.deployment(dep_id)
        except NotFound:
            raise conflict from None  # the model is another tenant's: Orion's 409 says whose
        if (got.get("spec") or {}).get("tenant_id") != dep.get("tenant_id"):
            raise


def _model_and_version(dep_id: str) -> tuple[str, str]:
    model, _, version = dep_id.rpartition("--")
    return model, version


def apply(
    api: OrionApi, *, spec: dict[str, Any], meta: dict[str, Any], status: dict[str, Any], tenant: str
) -> dict[str, Any]:
    """One step for a serving object; returns its status fields (with ``notes`` and ``events``)."""
    want = mapping.serving(spec, name=meta["name"], tenant=tenant)
    dep_id = f"{want.model_id}--{want.version}"
    current = status.get("version")
    previous = list(status.get("previousVersions") or [])
    deployed = status.get("orionId")
    base: dict[str, Any] = {"notes": want.notes}
    if spec.get("suspend"):
        if deployed:
            delete(api, model=want.model_id, status=status, tenant=tenant)
        return {**base, "phase": "Suspended", "orionId": None, "version": None, "previousVersions": []}
    rolling = (spec.get("deployment") or {}).get("strategy") == "rolling"
    if rolling:  # a bad setting is refused before anything is deployed
        mapping.rolling_block((spec.get("deployment") or {}).get("rolling") or {})
    if current != want.version or not deployed:
        replacing = bool(current and deployed and current != want.version)
        # a rolling release brings the new version's replicas up itself, within maxSurge
        _create_or_adopt(
            api, mapping.candidate_size(want.deployment) if replacing and rolling else want.deployment
        )
        if replacing:
            previous = [v for v in previous + [current] if v != want.version]
        return {
            **base,
            "orionId": dep_id,
            "version": want.version,
            "previousVersions": previous,
            "phase": "Deploying",
            "replicasReady": 0,
        }
    try:
        view = api.deployment(dep_id)
    except NotFound:  # the record was deleted behind the operator's back: recreate, and say so
        _create_or_adopt(api, want.deployment)
        ev = ("Recreated", True, "RecordMissing", f"{dep_id} was gone from Orion; deployed again")
        return {
            **base,
            "orionId": dep_id,
            "phase": "Deploying",
            "replicasReady": 0,
            "recreations": int(status.get("recreations") or 0) + 1,
            "events": [ev],
        }
    if (view.get("spec") or {}).get("tenant_id") != tenant:  # the status was not written by us
        why = f"{dep_id} is not a deployment of tenant {tenant}"
        return {**base, "phase": "Refused", "message": why, "events": [("Valid", False, "NotOwned", why)]}
    # while a rolling release replaces replicas, Orion sizes both versions: scaling the new one
    # to the spec's count here would undo maxSurge; the count is checked again once it is done
    if not (rolling and previous) and _scale_differs(view.get("spec") or {}, want.deployment):
        api.scale(want.model_id, mapping.scale_body(want.deployment))
        view = api.deployment(dep_id)
    events: list[tuple] = []
    release = api.release(want.model_id)
    if previous:
        previous, release, events, notes = _roll(api, spec, want, previous, view, release)
        base["notes"] = want.notes + notes
    out = from_deployment(view, release)
    return {**base, **out, "previousVersions": previous, "events": events}


def _scale_differs(have: dict[str, Any], want: dict[str, Any]) -> bool:
    auto_have, auto_want = have.get("autoscaling"), want.get("autoscaling")
    if (auto_have is None) != (auto_want is None):
        return True
    if auto_want is None:
        return have.get("replicas") != want.get("replicas")
    keys = ("min_replicas", "max_replicas")
    return any(auto_have.get(k) != auto_want.get(k) for k in keys)


def _roll(
    api: OrionApi,
    spec: dict[str, Any],
    want: mapping.Serving,
    previous: list[str],
    view: dict[str, Any],
    release: Any,
) -> tuple[list[str], Any, list[tuple], tuple[str, ...]]:
    """Move traffic from the last previous version to the new one as ``spec.deployment`` says,
    once the new one is healthy; undeploy the old ones when the new one has it all."""
    notes: tuple[str, ...] = ()
    if view.get("status") != "healthy":
        return previous, release, [], notes
    stable = previous[-1]
    body, notes = mapping.release_body(spec, model_id=want.model_id, stable=stable, candidate=want.version)
    if not _release_for(release, want.version):
        release = api.set_release(body)
    phase = (release or {}).get("phase")
    weights = (release or {}).get("weights") or {}
    if phase == "rolled_back":
        why = f"{want.version} failed its criteria; traffic back on {stable}"
        ev = ("RolloutSucceeded", False, "RolledBack", why)
        return previous, release, [ev], notes
    if phase in DONE_PHASES or (weights.get(want.version, 0) >= 100 and len(weights) <= 1 + len(previous)):
        if all(weights.get(v, 0) == 0 for v in previous):
            for v in previous:
                try:
                    api.undeploy(f"{want.model_id}--{v}")
                except NotFound:
                    pass
            ev = ("RolloutSucceeded", True, "Promoted", f"{want.version} takes all traffic")
            return [], release, [ev], notes
    return previous, release, [], notes


def _release_for(release: Any, version: str) -> bool:
    """Whether ``release`` already moves traffic to ``version`` (so it is not started again)."""
    spec = (release or {}).get("spec") or {}
    return version in (spec.get("candidate"), spec.get("stable"))


def delete(api: OrionApi, *, model: str, status: dict[str, Any], tenant: str) -> None:
    """Undeploy every version the object made: older ones first. A release that still sends
    traffic to an old version is first pointed at the current one alone, since Orion refuses
    (409) to undeploy a version taking traffic unless it is the model's last. ``model`` comes
    from the spec, and only deployments of the object's tenant are touched (the status is data
    anyone allowed to write it could change)."""
    dep_id = status.get("orionId")
    if not dep_id:
        return
    named, current = _model_and_version(dep_id)
    if named != model:
        return  # the status names another model than the spec's: not this object's to remove
    versions = [v for v in status.get("previousVersions") or [] if v != current] + [current]
    ours = []
    for v in versions:
        try:
            if (api.deployment(f"{model}--{v}").get("spec") or {}).get("tenant_id") == tenant:
                ours.append(v)
        except NotFound:
            pass
    if len(ours) > 1:
        try:
            api.set_release({"model_id": model, "strategy": "weighted", "stable": ours[-1]})
        except (NotFound, Conflict, ValidationError):
            pass  # no release, or a version already gone: the undeploys below still run
    for v in ours:
        try:
            api.undeploy(f"{model}--{v}")
        except NotFound:
            pass
