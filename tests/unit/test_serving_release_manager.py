"""Rolling releases, scaling events and replica status through the deployment manager, over a
simulated Serve (no Ray): the manager drives ``policy/rollout.py`` and records what it does."""

import pytest

from orion_ray.policy import traffic
from orion_ray.serving.manager import DeploymentManager, MemoryDeployer, MemoryKv
from orion_ray.serving.scaling_events import AUTOSCALER, MANUAL, ROLLOUT, ScalingLog, store_events
from orion_ray.serving_specs import DeploymentSpec, ReleaseSpec, ScaleRequest
from orion_ray.store import SQLiteStore


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class SimServe(MemoryDeployer):
    """Serve as the manager sees it: what was asked runs one ``advance`` later (never, for the
    apps in ``never``), and Serve's target is what was asked."""

    def __init__(self, never=()):
        super().__init__()
        self.want: dict[str, int] = {}
        self.never = set(never)
        self.rows: dict[str, list] = {}

    def deploy(self, spec, app, restart_nonce, front=False):
        super().deploy(spec, app, restart_nonce, front)
        a = spec.autoscaling
        self.want[app] = (
            spec.replicas or 1
            if a is None
            else (a.initial_replicas if a.initial_replicas is not None else a.min_replicas)
        )

    def advance(self):
        for app, n in self.want.items():
            ready = 0 if app in self.never else n
            st = self.statuses_by_app[app]
            st.update(status="RUNNING" if ready == n else "DEPLOYING", running=ready, alive=n)
            self.targets_by_app[app] = n

    def replicas(self, app):
        return self.rows.get(app)


def manager(serve, clock, sink=None, kv=None):
    return DeploymentManager(serve, kv=kv, clock=clock, scaling_sink=sink)


def setup(serve, clock, *, stable=3, candidate=1, sink=None, kv=None):
    m = manager(serve, clock, sink, kv)
    m.create(DeploymentSpec(model_id="chat", version="v1", replicas=stable))
    m.create(DeploymentSpec(model_id="chat", version="v2", replicas=candidate))
    serve.advance()
    m.tick()
    return m


def rolling(**settings):
    return ReleaseSpec.model_validate(
        {"model_id": "chat", "stable": "v1", "candidate": "v2", "strategy": "rolling", "rolling": settings}
    )


def run(m, serve, clock, ticks=40):
    alive = []
    for _ in range(ticks):
        clock.t += 1
        serve.advance()
        alive.append(sum(s.get("alive", 0) for s in serve.statuses_by_app.values()))
        m.tick()
        if m.releases["chat"]["state"].phase != traffic.RUNNING:
            break
    return alive


def test_a_rolling_release_replaces_every_replica_within_max_surge_and_promotes():
    serve, clock, sink = SimServe(), Clock(), []
    m = setup(serve, clock, sink=sink.extend)
    view = m.set_release(rolling(maxSurge=1, maxUnavailable=0, progressDeadline="1m"))
    assert view["phase"] == "running" and view["weights"] == {"v1": 100.0, "v2": 0.0}
    alive = run(m, serve, clock)
    rel = m.release_view("chat")
    assert rel["phase"] == "promoted" and rel["weights"] == {"v1": 0.0, "v2": 100.0}
    assert max(alive) <= 3 + 1
    assert m.deployments["chat--v2"]["spec"].replicas == 3
    old = m.deployments["chat--v1"]["spec"]
    assert (
        old.replicas is None and old.autoscaling.min_replicas == 0 and old.autoscaling.initial_replicas == 0
    )
    kinds = [e["kind"] for e in m.list_events("chat")]
    assert kinds[0] == "promoted" and "advanced" in kinds and "started" in kinds
    for _ in range(3):  # the last targets are reached and their events stored
        clock.t += 3
        serve.advance()
        m.tick()
    rollout_events = [e for e in sink if e["trigger"] == ROLLOUT]
    assert rollout_events and all(e["outcome"] in ("completed", "superseded") for e in rollout_events)
    assert not [e for e in sink if e["trigger"] == AUTOSCALER]  # the rollout's own changes


def test_weights_follow_ready_replicas_while_rolling():
    serve, clock = SimServe(), Clock()
    m = setup(serve, clock, stable=4)
    m.set_release(rolling(maxSurge="25%", maxUnavailable="25%"))
    seen = set()
    for _ in range(30):
        clock.t += 1
        serve.advance()
        m.tick()
        w = m.release_view("chat")["weights"]
        assert w["v1"] + w["v2"] == pytest.approx(100)
        seen.add(round(w["v2"]))
        if m.release_view("chat")["phase"] != "running":
            break
    assert seen - {0, 100} and 100 in seen  # moved through intermediate shares


def test_a_candidate_never_ready_rolls_back_after_progress_deadline():
    serve, clock = SimServe(never={"orion-llm-chat--v2"}), Clock()
    m = setup(serve, clock)
    m.set_release(rolling(maxSurge=1, progressDeadline="10s"))
    run(m, serve, clock)
    rel = m.release_view("chat")
    assert rel["phase"] == "rolled_back" and rel["weights"] == {"v1": 100.0, "v2": 0.0}
    assert m.deployments["chat--v1"]["spec"].replicas == 3
    assert m.deployments["chat--v2"]["spec"].autoscaling.initial_replicas == 0
    assert "progressDeadline" in m.list_events("chat")[0]["message"]


def test_failing_success_criteria_roll_a_rolling_release_back():
    serve, clock = SimServe(), Clock()
    m = setup(serve, clock)
    spec = rolling(maxSurge=1, progressDeadline="5m").model_copy(
        update={
            "success_criteria": ReleaseSpec.model_validate(
                {
                    "model_id": "chat",
                    "stable": "v1",
                    "success_criteria": {"error_rate": "< 1%", "min_requests": 3},
                }
            ).success_criteria
        }
    )
    m.set_release(spec)
    clock.t += 1
    m.report([("chat", "v2", False, 0.1)] * 5)
    serve.advance()
    m.tick()
    assert m.release_view("chat")["phase"] == "rolled_back"
    assert m.deployments["chat--v1"]["spec"].replicas == 3


def test_an_operators_rollback_mid_rollout_brings_the_stable_replicas_back():
    serve, clock = SimServe(), Clock()
    m = setup(serve, clock)
    m.set_release(rolling(maxSurge=1))
    for _ in range(3):
        clock.t += 1
        serve.advance()
        m.tick()
    m.rollback("chat")
    assert m.deployments["chat--v1"]["spec"].replicas == 3
    assert m.deployments["chat--v2"]["spec"].autoscaling.initial_replicas == 0
    assert m.release_view("chat")["phase"] == "rolled_back"


def test_a_rollout_survives_a_restart_of_the_manager():
    serve, clock, kv = SimServe(), Clock(), MemoryKv()
    m = setup(serve, clock, kv=kv)
    m.set_release(rolling(maxSurge=1))
    for _ in range(2):
        clock.t += 1
        serve.advance()
        m.tick()
    again = manager(serve, clock, kv=kv)
    assert "rollout" in again.releases["chat"]
    run(again, serve, clock)
    assert again.release_view("chat")["phase"] == "promoted"


def test_rollback_on_error_off_holds_the_release_instead():
    serve, clock = SimServe(), Clock()
    m = setup(serve, clock)
    m.set_release(
        ReleaseSpec.model_validate(
            {
                "model_id": "chat",
                "stable": "v1",
                "candidate": "v2",
                "strategy": "blue-green",
                "blue_green": {"rollback_on_error": False, "testing_period": "10m"},
                "success_criteria": {"error_rate": "< 1%", "min_requests": 2},
            }
        )
    )
    m.report([("chat", "v2", False, 0.1)] * 3)
    clock.t += 1
    m.tick()
    rel = m.release_view("chat")
    assert rel["phase"] == "held" and rel["weights"]["v2"] == 100.0
    assert m.list_events("chat")[0]["kind"] == "held"


# -- scaling events --------------------------------------------------------------------------------
def test_a_manual_scale_is_an_event_with_trigger_before_after_and_outcome():
    serve, clock, sink = SimServe(), Clock(), []
    m = manager(serve, clock, sink.extend)
    m.create(DeploymentSpec(model_id="chat", version="v1", replicas=1))
    serve.advance()
    m.tick()
    m.scale("chat", ScaleRequest(replicas=3))
    clock.t += 1
    m.tick()
    assert sink == []  # the outcome is not known yet
    serve.advance()
    clock.t += 2
    m.tick()
    [e] = sink
    assert (e["trigger"], e["before"], e["after"], e["outcome"]) == (MANUAL, 1, 3, "completed")
    assert e["deployment"] == "chat--v1" and e["duration_s"] == 3.0


def test_serves_own_autoscaling_decisions_become_events():
    serve, clock, sink = SimServe(), Clock(), []
    m = manager(serve, clock, sink.extend)
    m.create(
        DeploymentSpec(model_id="chat", version="v1", autoscaling={"min_replicas": 1, "max_replicas": 4})
    )
    serve.advance()
    m.tick()
    serve.targets_by_app["orion-llm-chat--v1"] = 3  # Serve's autoscaler decides 1 -> 3
    clock.t += 2
    m.tick()
    serve.statuses_by_app["orion-llm-chat--v1"]["running"] = 3
    clock.t += 2
    m.tick()
    [e] = sink
    assert (e["trigger"], e["before"], e["after"], e["outcome"]) == (AUTOSCALER, 1, 3, "completed")


def test_open_events_are_superseded_or_time_out_and_wait_for_the_scheduler():
    log, got, down = ScalingLog(), [], [True]

    def sink(batch):
        if down[0]:
            raise RuntimeError("scheduler restarting")
        got.extend(batch)

    log.sink = sink
    log.requested("m--v1", "m", trigger=MANUAL, before=1, after=3, reason="scale", now=0.0)
    log.requested("m--v1", "m", trigger=MANUAL, before=1, after=2, reason="scale", now=1.0)
    log.observe("m--v1", "m", target=2, running=1, now=50.0, deadline=30.0)
    assert log.flush() == 0 and len(log.outbox) == 2
    saved = log.dump()
    again = ScalingLog(sink)
    again.load(saved)
    down[0] = False
    assert again.flush() == 2 and again.outbox == []
    assert [e["outcome"] for e in got] == ["superseded", "timed_out"] and got[1]["running"] == 1


def test_serving_events_land_in_the_stores_scaling_events(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    event = {
        "at": 5.0,
        "trigger": MANUAL,
        "reason": "scale",
        "before": 1,
        "after": 3,
        "outcome": "completed",
        "duration_s": 2.0,
        "model_id": "chat",
        "deployment": "chat--v1",
    }
    assert store_events(store, [event, "junk"]) == 1
    [row] = store.scaling_events(kind="model")
    assert (row["trigger"], row["before"], row["after"], row["outcome"]) == (MANUAL, 1, 3, "completed")
    assert row["details"]["deployment"] == "chat--v1"


# -- replica status --------------------------------------------------------------------------------
def test_status_carries_each_replica_and_none_when_serve_cannot_say():
    serve, clock = SimServe(), Clock()
    m = manager(serve, clock)
    m.create(DeploymentSpec(model_id="chat", version="v1", replicas=1, gpus_per_replica=0.5))
    assert m.status("chat--v1")["replicas"] is None
    serve.rows["orion-llm-chat--v1"] = [
        {
            "replica_id": "r1",
            "node_id": "n1",
            "node_ip": "10.0.0.1",
            "state": "RUNNING",
            "restarts": 0,
            "start_time_s": 1.0,
            "health": {"at": 2.0, "ok": True, "latency_ms": 1.0, "error": None},
        }
    ]
    [r] = m.dispatch("status", "chat--v1")["replicas"]
    assert r["replica_id"] == "r1" and r["node_id"] == "n1" and r["gpus"] == 0.5 and r["state"] == "RUNNING"
    assert r["restarts"] == 0 and r["last_health_check"]["ok"] is True


def test_a_scale_keeps_serves_version_and_a_restart_or_new_args_change_it():
    from orion_ray.serving.deployer import code_version

    spec = DeploymentSpec(model_id="chat", version="v1", replicas=1)
    same = code_version(spec, 0)
    assert code_version(spec.model_copy(update={"replicas": 4}), 0) == same
    assert code_version(spec, 1) != same
    assert code_version(spec.model_copy(update={"engine_args": {"latency_s": 1}}), 0) != same


def test_a_completed_rolling_release_moves_the_base_url_to_the_promoted_version():
    serve, clock = SimServe(), Clock()
    m = setup(serve, clock)
    assert m.view("chat--v1")["base_url"] == "/models/chat/v1" and m.view("chat--v2")["base_url"] is None
    m.set_release(rolling(maxSurge=1))
    run(m, serve, clock)
    assert m.release_view("chat")["phase"] == "promoted"
    assert m.view("chat--v2")["base_url"] == "/models/chat/v1" and m.view("chat--v1")["base_url"] is None
    assert serve.routes["chat"] == "orion-llm-chat--v2"  # Serve's one app per prefix held
    assert any(e["kind"] == "base_url_moved" for e in m.list_events("chat"))
    m2 = manager(serve, clock, kv=m.kv)  # the front is saved state
    assert m2.view("chat--v2")["base_url"] == "/models/chat/v1"
    m2.delete("chat--v1")  # undeploying the replaced version leaves the base URL where it is
    assert serve.routes["chat"] == "orion-llm-chat--v2"


def test_a_rolled_back_release_keeps_the_base_url_and_a_refused_move_puts_it_back():
    serve, clock = SimServe(never={"orion-llm-chat--v2"}), Clock()
    m = setup(serve, clock)
    m.set_release(rolling(maxSurge=1, progressDeadline="10s"))
    run(m, serve, clock)
    assert m.release_view("chat")["phase"] == "rolled_back"
    assert serve.routes["chat"] == "orion-llm-chat--v1"

    class Refusing(SimServe):
        def deploy(self, spec, app, restart_nonce, front=False):
            if front and app.endswith("v2"):
                raise RuntimeError("Serve refused the route")
            super().deploy(spec, app, restart_nonce, front)

    serve, clock = Refusing(), Clock()
    m = setup(serve, clock)
    m.set_release(rolling(maxSurge=1))
    run(m, serve, clock)
    assert m.release_view("chat")["phase"] == "promoted"  # the release stands, one hop longer
    assert serve.routes["chat"] == "orion-llm-chat--v1" and m.view("chat--v1")["base_url"]
    assert "base_url_failed" in [e["kind"] for e in m.list_events("chat")]


def test_a_failed_redeploy_of_the_replaced_version_keeps_the_base_url_where_serve_has_it():
    class Flaky(SimServe):
        fail = False

        def deploy(self, spec, app, restart_nonce, front=False):
            if self.fail and app.endswith("v1") and not front:
                raise RuntimeError("the controller is restarting")
            super().deploy(spec, app, restart_nonce, front)

    serve, clock = Flaky(), Clock()
    m = setup(serve, clock)
    m.set_release(rolling(maxSurge=1))
    failed = 0
    for _ in range(40):
        clock.t += 1
        serve.advance()
        serve.fail = failed == 0  # v1 is redeployed without the route only at the end: once
        try:
            m.tick()
        except RuntimeError:
            assert m.deployments["chat--v1"]["front"] and serve.routes["chat"] == "orion-llm-chat--v1"
            failed += 1
        if m.releases["chat"]["state"].phase != traffic.RUNNING:
            break
    assert failed == 1 and m.release_view("chat")["phase"] == "promoted"
    assert serve.routes["chat"] == "orion-llm-chat--v2" and m.view("chat--v2")["base_url"]


def test_a_version_sized_to_zero_gives_its_last_replica_back_soon():
    """A replaced version is 0..1 replicas with a short idle delay, not Serve's default 600 s."""
    from orion_ray.serving.rolling import RETIRED_IDLE_S, sized
    from orion_ray.serving_specs import DeploymentSpec

    spec = DeploymentSpec(model_id="m", version="v1", engine="test", replicas=2)
    zero = sized(spec, 0)
    assert zero.replicas is None and zero.autoscaling is not None
    a = zero.autoscaling
    assert (a.min_replicas, a.max_replicas, a.initial_replicas) == (0, 1, 0)
    assert a.downscale_delay == RETIRED_IDLE_S < 600
    assert sized(spec, 3).replicas == 3 and sized(spec, 3).autoscaling is None
