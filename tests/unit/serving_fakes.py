"""In-process stand-ins for the serving pieces that need Ray: a manager without Serve, and
handles that call a real ``LLMReplica`` object directly (the same code a Serve replica runs)."""

from __future__ import annotations

from orion_ray.serving.manager import DeploymentManager, LocalManagerClient, MemoryDeployer
from serve_apps.llm.replica import LLMReplica


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class LocalHandle:
    """A deployment handle over one in-process replica: ``.complete.remote(...)`` awaits it,
    ``.options(stream=True).stream.remote(...)`` iterates it."""

    def __init__(self, replica: LLMReplica):
        self.replica = replica
        self.calls = 0

    def options(self, **_):
        return self

    def __getattr__(self, name):
        fn = getattr(self.replica, name)

        def counted(*a, **kw):
            self.calls += 1
            return fn(*a, **kw)

        return _Method(counted)


class LocalServing:
    """A manager over a recording deployer, whose deployments get in-process test replicas."""

    def __init__(self, clock=None):
        self.deployer = MemoryDeployer()
        self.manager = (
            DeploymentManager(self.deployer, clock=clock) if clock else DeploymentManager(self.deployer)
        )
        self.client = LocalManagerClient(self.manager)
        self.handles: dict[str, LocalHandle] = {}

    def handle_of(self, app: str) -> LocalHandle:
        if app not in self.handles:
            call = [c for c in self.deployer.calls if c[0] == "deploy" and c[1] == app][-1]
            spec = call[3]
            self.handles[app] = LocalHandle(
                LLMReplica(spec.engine, spec.engine_args, spec.model_id, spec.version)
            )
        return self.handles[app]

    def running(self) -> None:
        """Every deployed app reports RUNNING with its replicas."""
        for st in self.deployer.statuses_by_app.values():
            st.update(status="RUNNING", running=1)
