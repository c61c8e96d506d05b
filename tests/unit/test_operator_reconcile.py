"""One reconcile pass against a fake Orion (an in-memory stand-in for the REST routes the operator
uses, raising Orion's own typed errors), and the delete handler's bound."""

from __future__ import annotations

import datetime

import pytest

from orion_ray.errors import Conflict, NotFound, SchedulerUnavailable, ValidationError
from orion_ray.operator.reconcile import Reconciler

NOW = "2026-12-06T10:00:00Z"
META = {"name": "job", "namespace": "team-a", "uid": "u-1", "generation": 1}
TASK = {"workload": {"workload_type": "task", "function": "math:factorial", "args": [5]}}


class FakeOrion:
    """Workloads keyed by request_id (idempotent, as Orion is), deployments by id."""

    def __init__(self):
        self.workloads: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self.deployments: dict[str, dict] = {}
        self.releases: dict[str, dict] = {}
        self.calls: list[str] = []
        self.down = False

    def _call(self, name):
        if self.down:
            raise SchedulerUnavailable("cannot reach Orion")
        self.calls.append(name)

    def submit_workload(self, body):
        self._call("submit")
        if body.get("resources", {}).get("cpu", 0) < 0:
            raise ValidationError("bad", [{"field": "resources.cpu", "problem": "negative"}])
        key = body["metadata"]["request_id"]
        if key not in self.by_key:
            wid = f"w{len(self.by_key) + 1}"
            self.by_key[key] = wid
            tenant = body["metadata"]["tenant_id"]
            self.workloads[wid] = {
                "workload_id": wid,
                "status": "queued",
                "attempt": 1,
                "tenant_id": tenant,
                **body,
            }
        return {"workload_id": self.by_key[key], "status": "queued"}

    def workload(self, wid):
        self._call("get")
        if wid not in self.workloads:
            raise NotFound(f"no workload {wid}")
        return self.workloads[wid]

    def cancel_workload(self, wid):
        self._call("cancel")
        if wid not in self.workloads:
            raise NotFound(wid)
        self.workloads[wid]["status"] = "cancelled"
        return self.workloads[wid]

    def create_deployment(self, body):
        self._call("create")
        dep_id = f"{body['model_id']}--{body['version']}"
        if dep_id in self.deployments:
            raise Conflict(f"deployment {dep_id} exists")
        self.deployments[dep_id] = {
            "id": dep_id,
            "version": body["version"],
            "status": "healthy",
            "running_replicas": body.get("replicas") or 1,
            "restarts": 0,
            "spec": body,
        }
        return self.deployments[dep_id]

    def deployment(self, dep_id):
        self._call("view")
        if dep_id not in self.deployments:
            raise NotFound(dep_id)
        return self.deployments[dep_id]

    def undeploy(self, dep_id):
        self._call(f"undeploy {dep_id}")
        if dep_id not in self.deployments:
            raise NotFound(dep_id)
        del self.deployments[dep_id]

    def scale(self, model_id, body):
        self._call("scale")
        for d in self.deployments.values():
            if d["version"] == body["version"]:
                d["spec"] = {**d["spec"], "replicas": body.get("replicas")}
                d["running_replicas"] = body.get("replicas")
        return []

    def set_release(self, body):
        self._call("release")
        target = body.get("candidate") or body["stable"]
        rel = {"strategy": body["strategy"], "phase": "steady", "weights": {target: 100.0}, "spec": body}
        self.releases[body["model_id"]] = rel
        return rel

    def release(self, model_id):
        return self.releases.get(model_id)


def _pass(rec, spec, status, meta=META):
    out = rec.apply(spec=spec, meta=meta, status=status, now=NOW)
    return {**status, **out}


def _cond(status, kind):
    return {c["type"]: c for c in status["conditions"]}[kind]


def test_the_first_pass_submits_once_and_writes_orions_id():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, TASK, {})
    assert status["orionId"] == "w1" and status["requestId"] == "k8s-u-1" and status["submissions"] == 1
    assert orion.calls == ["submit"]  # nothing else before the id is in the status
    assert orion.workloads["w1"]["metadata"] == {"tenant_id": "team-a", "request_id": "k8s-u-1"}


def test_a_pass_that_lost_its_status_write_finds_the_same_workload():
    orion = FakeOrion()
    rec = Reconciler(orion)
    _pass(rec, TASK, {})
    again = _pass(rec, TASK, {})  # as if the status write had not happened
    assert again["orionId"] == "w1" and len(orion.workloads) == 1


def test_later_passes_mirror_orions_status():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, TASK, {})
    orion.workloads["w1"].update(status="completed", attempt=2, result=120)
    status = _pass(rec, TASK, status)
    assert status["phase"] == "Succeeded" and status["attempts"] == 2 and status["result"] == {"value": 120}
    assert _cond(status, "Ready")["status"] == "True" and status["observedGeneration"] == 1


def test_a_lost_record_of_an_unfinished_workload_is_resubmitted_and_said_so():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, TASK, {})
    del orion.workloads["w1"]
    status = _pass(rec, TASK, status)
    assert status["orionId"] == "w2" and status["requestId"] == "k8s-u-1-2" and status["recreations"] == 1
    assert _cond(status, "Recreated")["status"] == "True"


def test_a_lost_record_of_a_finished_workload_is_reported_not_rerun():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, TASK, {})
    orion.workloads["w1"]["status"] = "completed"
    status = _pass(rec, TASK, status)
    del orion.workloads["w1"]
    status = _pass(rec, TASK, status)
    assert status["phase"] == "Succeeded" and status["orionId"] == "w1" and len(orion.workloads) == 0
    assert _cond(status, "RecordMissing")["reason"] == "NotFoundInOrion"


def test_suspend_holds_then_cancels_then_resubmits():
    orion = FakeOrion()
    rec = Reconciler(orion)
    held = _pass(rec, {**TASK, "suspend": True}, {})
    assert held["phase"] == "Suspended" and orion.calls == []
    status = _pass(rec, TASK, held)
    status = _pass(rec, {**TASK, "suspend": True}, status)
    assert status["phase"] == "Suspended" and orion.workloads["w1"]["status"] == "cancelled"
    status = _pass(rec, TASK, status)
    assert status["orionId"] == "w2" and status["requestId"] == "k8s-u-1-2"


def test_a_spec_orion_refuses_is_a_condition():
    rec = Reconciler(FakeOrion())
    bad = {"workload": {**TASK["workload"], "resources": {"cpu": -1}}}
    status = _pass(rec, bad, {})
    assert status["phase"] == "Invalid"
    valid = _cond(status, "Valid")
    assert valid["status"] == "False" and "resources.cpu: negative" in valid["message"]


def test_a_spec_the_operator_refuses_never_reaches_orion():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, {**TASK, "tenant": "team-b"}, {})
    assert status["phase"] == "Invalid" and _cond(status, "Valid")["reason"] == "InvalidSpec"
    assert orion.calls == []


def test_orion_down_is_raised_for_kopfs_retry():
    orion = FakeOrion()
    orion.down = True
    with pytest.raises(SchedulerUnavailable):
        Reconciler(orion).apply(spec=TASK, meta=META, status={}, now=NOW)


def test_delete_cancels_and_a_gone_record_is_fine():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, TASK, {})
    rec.delete(spec=TASK, status=status, namespace="team-a", name="job")
    assert orion.workloads["w1"]["status"] == "cancelled"
    del orion.workloads["w1"]
    rec.delete(spec=TASK, status=status, namespace="team-a", name="job")  # 404: nothing left to cancel


# -- serving --------------------------------------------------------------------------------------
SERVE = {"replicas": 2, "engine": "test", "image": "img:v1"}
SMETA = {**META, "name": "chat"}


def test_serving_deploys_then_mirrors_then_scales():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, SERVE, {}, SMETA)
    assert status["phase"] == "Deploying" and status["orionId"].startswith("chat--r")
    status = _pass(rec, SERVE, status, SMETA)
    assert status["phase"] == "Ready" and status["replicasReady"] == 2
    status = _pass(rec, {**SERVE, "replicas": 4}, status, SMETA)
    assert "scale" in orion.calls and status["replicasReady"] == 4


def test_a_new_image_rolls_out_and_the_old_version_goes():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, SERVE, _pass(rec, SERVE, {}, SMETA), SMETA)
    old = status["orionId"]
    new_spec = {**SERVE, "image": "img:v2"}
    status = _pass(rec, new_spec, status, SMETA)
    assert status["previousVersions"] == [old.split("--")[1]] and len(orion.deployments) == 2
    status = _pass(rec, new_spec, status, SMETA)
    assert status["previousVersions"] == [] and list(orion.deployments) == [status["orionId"]]
    assert _cond(status, "RolloutSucceeded")["status"] == "True"


class RollingOrion(FakeOrion):
    """A rolling release stays running (traffic on the old version) until the test promotes it."""

    def set_release(self, body):
        rel = super().set_release(body)
        if body["strategy"] == "rolling":
            rel.update(phase="running", weights={body["stable"]: 100.0, body["candidate"]: 0.0})
        return rel


def test_a_rolling_strategy_is_orions_rolling_release_and_the_spec_count_waits_for_it():
    orion = RollingOrion()
    rec = Reconciler(orion)
    spec = {
        **SERVE,
        "deployment": {"strategy": "rolling", "rolling": {"maxSurge": 1, "progressDeadline": "5m"}},
    }
    status = _pass(rec, spec, _pass(rec, spec, {}, SMETA), SMETA)
    old = status["orionId"].split("--")[1]
    new_spec = {**spec, "image": "img:v2"}
    status = _pass(rec, new_spec, status, SMETA)
    new = status["orionId"]
    assert orion.deployments[new]["spec"]["replicas"] == 1  # the release brings up the rest
    orion.calls.clear()
    status = _pass(rec, new_spec, status, SMETA)
    body = orion.releases["chat"]["spec"]
    assert body["strategy"] == "rolling" and body["rolling"] == {"maxSurge": 1, "progressDeadline": "5m"}
    assert (body["stable"], body["candidate"]) == (old, new.split("--")[1])
    status = _pass(rec, new_spec, status, SMETA)
    assert "scale" not in orion.calls and status["previousVersions"] == [old]  # Orion sizes both
    orion.releases["chat"].update(phase="promoted", weights={old: 0.0, new.split("--")[1]: 100.0})
    status = _pass(rec, new_spec, status, SMETA)
    assert status["previousVersions"] == [] and list(orion.deployments) == [new]
    assert _cond(status, "RolloutSucceeded")["status"] == "True"
    status = _pass(rec, new_spec, status, SMETA)  # done: the spec's count applies again
    assert "scale" in orion.calls and orion.deployments[new]["spec"]["replicas"] == 2


def test_a_bad_rolling_setting_is_invalid_before_anything_is_deployed():
    orion = RollingOrion()
    spec = {**SERVE, "deployment": {"strategy": "rolling", "rolling": {"maxSurge": "lots"}}}
    status = _pass(Reconciler(orion), spec, {}, SMETA)
    assert status["phase"] == "Invalid" and "deployment.rolling.maxSurge" in status["message"]
    assert not orion.deployments


def test_a_deployment_deleted_behind_the_operators_back_is_recreated():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, SERVE, _pass(rec, SERVE, {}, SMETA), SMETA)
    orion.deployments.clear()
    status = _pass(rec, SERVE, status, SMETA)
    assert status["recreations"] == 1 and status["orionId"] in orion.deployments


def test_a_deployment_made_by_an_earlier_pass_is_adopted():
    orion = FakeOrion()
    rec = Reconciler(orion)
    _pass(rec, SERVE, {}, SMETA)
    status = _pass(rec, SERVE, {}, SMETA)  # the first pass's status write was lost
    assert status["phase"] == "Deploying" and len(orion.deployments) == 1


def test_serving_delete_undeploys_every_version_and_suspend_undeploys():
    orion = FakeOrion()
    rec = Reconciler(orion)
    status = _pass(rec, SERVE, _pass(rec, SERVE, {}, SMETA), SMETA)
    status = _pass(rec, {**SERVE, "image": "img:v2"}, status, SMETA)
    rec.delete(spec=SERVE, status=status, namespace="team-a", name="chat")
    assert orion.deployments == {}
    status = _pass(rec, SERVE, {}, SMETA)
    status = _pass(rec, {**SERVE, "suspend": True}, status, SMETA)
    assert status["phase"] == "Suspended" and orion.deployments == {}


# -- the delete handler's bound ----------------------------------------------------------------
def test_delete_retries_while_orion_is_down_then_releases_the_finalizer():
    import kopf

    from orion_ray.operator import handlers

    orion = FakeOrion()
    orion.down = True
    handlers._state.update(
        config=handlers.OperatorConfig(url="http://x", api_key="k", delete_grace_s=300),
        reconciler=Reconciler(orion),
    )

    class Log:
        lines: list[str] = []

        def warning(self, msg):
            self.lines.append(msg)

    now = datetime.datetime.now(datetime.timezone.utc)
    recent = {"deletionTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    old = {"deletionTimestamp": (now - datetime.timedelta(seconds=400)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    status = {"form": "workload", "orionId": "w1"}
    try:
        with pytest.raises(kopf.TemporaryError):
            handlers.on_delete(spec=TASK, meta={**recent, "namespace": "team-a"}, status=status, logger=Log())
        handlers.on_delete(
            spec=TASK, meta={**old, "namespace": "team-a"}, status=status, logger=Log()
        )  # returns: released
        assert "w1 may remain" in Log.lines[-1]
    finally:
        handlers._state.clear()


def test_the_config_reads_the_key_from_a_file_and_never_shows_it(tmp_path):
    from orion_ray.operator.handlers import OperatorConfig

    (tmp_path / "key").write_text("s3cret-key\n")
    cfg = OperatorConfig.from_env({"ORION_URL": "http://o", "ORION_API_KEY_FILE": str(tmp_path / "key")})
    assert cfg.api_key == "s3cret-key" and "s3cret" not in repr(cfg)
    with pytest.raises(ValueError):
        OperatorConfig.from_env({"ORION_URL": "http://o"})
    with pytest.raises(ValueError):
        OperatorConfig.from_env(
            {"ORION_URL": "http://o", "ORION_API_KEY": "k", "ORION_OPERATOR_TENANTS": "x"}
        )


def test_a_model_of_another_owner_is_refused_with_orions_conflict():
    orion = FakeOrion()
    rec = Reconciler(orion)
    _pass(rec, SERVE, {}, SMETA)
    orion.create_deployment = lambda body: (_ for _ in ()).throw(Conflict("model chat belongs to tenant x"))
    status = _pass(rec, {**SERVE, "image": "other"}, {}, {**SMETA, "namespace": "team-b", "uid": "u-2"})
    assert status["phase"] == "Refused" and "belongs to tenant x" in status["message"]


def test_orion_operator_run_without_a_key_says_so_in_one_line(capsys, monkeypatch):
    from orion_ray.cli import main

    for var in ("ORION_URL", "ORION_API_KEY", "ORION_API_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert main(["operator", "run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ORION_URL" in err[0]


def test_a_status_naming_another_tenants_record_is_neither_mirrored_nor_cancelled():
    orion = FakeOrion()
    rec = Reconciler(orion)
    theirs = _pass(rec, TASK, {}, {**META, "namespace": "team-b", "uid": "u-9"})
    orion.workloads[theirs["orionId"]].update(status="completed", result="secret")
    forged = {"form": "workload", "orionId": theirs["orionId"], "phase": "Running", "submissions": 1}
    status = _pass(rec, TASK, forged)
    assert status["phase"] == "Refused" and "result" not in status
    assert _cond(status, "Valid")["reason"] == "NotOwned"
    orion.workloads[theirs["orionId"]]["status"] = "running"
    rec.delete(spec=TASK, status=forged, namespace="team-a", name="job")
    assert orion.workloads[theirs["orionId"]]["status"] == "running"


def test_serving_delete_touches_only_the_specs_model_of_its_tenant():
    orion = FakeOrion()
    rec = Reconciler(orion)
    other = _pass(rec, SERVE, {}, {**SMETA, "name": "their-model", "namespace": "team-b"})
    forged = {"form": "serving", "orionId": other["orionId"], "version": other["version"]}
    rec.delete(spec=SERVE, status=forged, namespace="team-a", name="chat")  # another model: left
    rec.delete(spec={**SERVE, "model": "their-model"}, status=forged, namespace="team-a", name="x")
    assert list(orion.deployments) == [other["orionId"]]  # another tenant's: left


def test_a_forged_serving_status_does_not_mirror_another_tenants_deployment():
    orion = FakeOrion()
    rec = Reconciler(orion)
    theirs = _pass(rec, SERVE, {}, {**SMETA, "namespace": "team-b"})
    forged = {"form": "serving", "orionId": theirs["orionId"], "version": theirs["version"]}
    status = _pass(rec, SERVE, forged, SMETA)  # same model name, namespace team-a
    assert status["phase"] == "Refused" and _cond(status, "Valid")["reason"] == "NotOwned"
    assert "replicasReady" not in status
