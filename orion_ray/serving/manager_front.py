"""A model's base URL in the deployment manager (docs/serving-hop.md): which version serves
``/models/{id}/v1`` (the front), moving it when that version goes or a rolling release promotes
another, and the routing table the routers and the first hops read. A mixin of
``DeploymentManager``: it uses the manager's ``deployments``, ``releases``, ``default_caching``,
``_deploy`` and ``_event``."""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..serving_specs import DeploymentSpec

APP_PREFIX = "orion-llm-"


def app_name(dep_id: str) -> str:
    """The Serve application of a deployment."""
    return APP_PREFIX + dep_id


def model_route(model_id: str) -> str:
    """The route prefix of a model's own OpenAI base URL (``<prefix>/v1`` is the base URL)."""
    return f"/models/{model_id}"


class FrontHooks:
    deployments: dict[str, dict]
    releases: dict[str, dict]
    default_caching: Optional[dict]
    _deploy: Callable[..., None]
    _event: Callable[..., Any]

    def _move_front(self, model_id: str) -> None:
        """The base URL's version was undeployed: the oldest remaining version takes the route
        (redeployed with it; Serve frees a deleting application's prefix at once)."""
        rest = sorted(
            (r for r in self.deployments.values() if r["spec"].model_id == model_id), key=lambda r: r["since"]
        )
        if rest:
            rest[0]["front"] = True
            try:
                self._deploy(rest[0]["spec"], rest[0]["nonce"], True)
            except Exception as exc:  # the undeploy stands; the base URL waits for a redeploy
                self._event(model_id, "base_url_failed", f"{rest[0]['spec'].id}: {exc}"[:300])
                return
            self._event(model_id, "base_url_moved", f"{model_route(model_id)}/v1 → {rest[0]['spec'].id}")

    def take_front(self, new: dict, old: dict) -> None:
        """Version ``new`` takes the model's base URL from ``old`` (a rolling release promoted
        it). The caller has just redeployed ``old`` without the route (``old["front"]`` False),
        which frees it in Serve's controller at once (one application per route prefix); ``new``
        is redeployed with it, its replicas kept (the route is not part of Serve's code version).
        If Serve refuses, the route goes back to ``old``, which forwards to ``new``: correct, one
        hop longer."""
        model_id = new["spec"].model_id
        new["front"] = True
        try:
            self._deploy(new["spec"], new["nonce"], True)
        except Exception as exc:
            new["front"], old["front"] = False, True
            self._deploy(old["spec"], old["nonce"], True)
            self._event(model_id, "base_url_failed", f"{new['spec'].id}: {exc}"[:300])
            return
        self._event(model_id, "base_url_moved", f"{model_route(model_id)}/v1 → {new['spec'].id}")

    def routing_table(self) -> dict[str, dict]:
        """Per model: owner, versions → Serve app, live weights, the release spec, each
        version's effective caching block and its running replicas."""
        table: dict[str, dict] = {}
        for rec in sorted(self.deployments.values(), key=lambda r: r["since"]):
            spec: DeploymentSpec = rec["spec"]
            m = table.setdefault(
                spec.model_id,
                {
                    "tenant_id": spec.tenant_id,
                    "versions": {},
                    "weights": {spec.version: 100.0},
                    "release": None,
                    "caching": {},
                    "replicas": {},
                },
            )
            m["versions"][spec.version] = app_name(spec.id)
            # running replicas: a base URL's replicas split the tenants' limits by it
            m["replicas"][spec.version] = rec["running"]
            # each version's response cache: its own block, else the cluster's (or the router's)
            caching = spec.caching.model_dump(mode="json") if spec.caching else self.default_caching
            m["caching"][spec.version] = caching
        for model_id, rel in self.releases.items():
            if model_id in table:
                table[model_id]["weights"] = dict(rel["state"].weights)
                table[model_id]["release"] = rel["spec"].model_dump(mode="json")
        return table
