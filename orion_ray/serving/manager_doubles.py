"""In-process doubles of the deployment manager's collaborators (tests, dry runs, no Ray): state
in memory, a deployer that records its calls, and a client with the actor client's interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..serving_specs import DeploymentSpec

if TYPE_CHECKING:
    from .manager import DeploymentManager


class MemoryKv:
    """State kept in memory only (tests)."""

    def __init__(self):
        self.state: Optional[dict] = None

    def load(self) -> Optional[dict]:
        return self.state

    def save(self, state: dict) -> None:
        self.state = state


class MemoryDeployer:
    """A deployer that records what it was asked and reports the statuses it is given (tests and
    dry runs): ``statuses_by_app[app] = {"status": "RUNNING", "message": "", "running": 1}``."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.statuses_by_app: dict[str, dict] = {}
        self.targets_by_app: dict[str, int] = {}  # Serve's target replicas, as a test sets them
        self.fronts: dict[str, str] = {}  # model → the app deployed last as its base URL's front
        self.routes: dict[str, str] = {}  # model → the app holding its base URL now

    def deploy(self, spec: DeploymentSpec, app: str, restart_nonce: int, front: bool = False) -> None:
        # Serve's rule: one application per route prefix; a redeploy without it frees it at once
        holder = self.routes.get(spec.model_id)
        if front and holder is not None and holder != app:
            raise RuntimeError(f"Prefix of {spec.model_id} is being used by application {holder}")
        self.calls.append(("deploy", app, restart_nonce, spec))
        if front:
            self.fronts[spec.model_id] = self.routes[spec.model_id] = app
        elif holder == app:
            del self.routes[spec.model_id]
        self.statuses_by_app.setdefault(app, {"status": "DEPLOYING", "message": "", "running": 0})

    def delete(self, app: str) -> None:
        self.calls.append(("delete", app))
        self.routes = {m: a for m, a in self.routes.items() if a != app}
        self.statuses_by_app.pop(app, None)

    def statuses(self) -> dict[str, dict]:
        return dict(self.statuses_by_app)

    def targets(self) -> dict[str, int]:
        return dict(self.targets_by_app)


class LocalManagerClient:
    """A manager in this process, with the actor client's interface (tests, no Ray)."""

    def __init__(self, manager: "DeploymentManager"):
        self.manager = manager

    async def call(self, method: str, *args: Any) -> Any:
        return self.manager.dispatch(method, *args)

    def report_nowait(self, samples: list) -> None:
        self.manager.report(samples)

    def usage_nowait(self, items: list) -> None:
        self.manager.report_usage(items)
