"""A Kubernetes API for the operator's tests: kmock's emulator on a loopback port (in its own
thread and event loop), with what an API server adds to an object on create (uid, generation,
creationTimestamp, resourceVersion) and generation bumped on a spec change; and the real operator
(kopf) running against it in another thread, as ``orion operator run`` would.

Objects go in and out over HTTP, as ``kubectl`` sends them (``Kube.apply``, ``get``, ``delete``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import httpx
import kmock
import kopf
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "deploy" / "crds" / "aiworkloads.orion.veritasstack.io.yaml"
BASE = "/apis/orion.veritasstack.io/v1"


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus the fields a real API server sets (the operator keys on ``uid``)."""

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {}) if request.action == kmock.action.CREATE else None
            if meta is not None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("generation", 1)
                meta.setdefault("resourceVersion", "1")
                now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                meta.setdefault("creationTimestamp", now)
                if request.namespace:
                    meta.setdefault("namespace", request.namespace)
            elif request.action == kmock.action.UPDATE and "spec" in data and request.name:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    gen = self.objects[key].get("metadata", {}).get("generation", 1)
                    data.setdefault("metadata", {})["generation"] = gen + 1
        return await super()._handle(request)


class Kube:
    """The running mock API server: its URL and a client that talks to it as kubectl does."""

    def __init__(self, url: str, server: ApiServer):
        self.url, self.server = url, server
        self.liveness = ""  # the operator's health endpoint, once it runs
        self.http = httpx.Client(base_url=url, timeout=30)

    def apply(self, manifest: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        r = self.http.post(f"{BASE}/namespaces/{namespace}/aiworkloads", json=manifest)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def get(self, name: str, namespace: str = "default") -> Optional[dict[str, Any]]:
        r = self.http.get(f"{BASE}/namespaces/{namespace}/aiworkloads/{name}")
        return None if r.status_code == 404 else r.json()

    def patch_spec(self, name: str, spec: dict[str, Any], namespace: str = "default") -> None:
        r = self.http.patch(
            f"{BASE}/namespaces/{namespace}/aiworkloads/{name}",
            json={"spec": spec},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text

    def delete(self, name: str, namespace: str = "default") -> None:
        r = self.http.delete(f"{BASE}/namespaces/{namespace}/aiworkloads/{name}")
        assert r.status_code in (200, 202), r.text

    def wait(self, name: str, check: Any, within_s: float = 180, namespace: str = "default") -> Any:
        """Poll the object until ``check(obj)`` holds (``obj`` None once it is gone), or
        ``within_s`` passes: a bound on waiting, not a timing assertion — the caller asserts."""
        end = time.monotonic() + within_s
        while True:
            obj = self.get(name, namespace)
            if check(obj) or time.monotonic() > end:
                return obj
            time.sleep(0.3)


def _declare(server: ApiServer) -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    names = crd["spec"]["names"]
    server.resources["orion.veritasstack.io/v1/aiworkloads"] = kmock.ResourceInfo(
        kind=names["kind"],
        singular=names["singular"],
        namespaced=True,
        verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
        shortnames=set(names["shortNames"]),
        subresources={"status"},
    )
    server.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event", namespaced=True, verbs={"create", "list", "get"}
    )
    server.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch", "get"}
    )
    server.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch", "get", "create"}
    )
    server.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]] = crd
    server.objects["v1/namespaces", None, "default"] = {"metadata": {"name": "default"}}


@contextlib.contextmanager
def api_server() -> Iterator[Kube]:
    """kmock's Kubernetes emulator serving on loopback until the block ends."""
    ready: dict[str, Any] = {}
    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        async with ApiServer() as server, kmock.Server(server) as srv:
            _declare(server)
            ready["url"], ready["server"] = str(srv.url).rstrip("/"), server
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="kmock", daemon=True)
    thread.start()
    assert started.wait(120), "kmock did not start"  # bounded: a loaded machine starts slowly
    try:
        yield Kube(ready["url"], ready["server"])
    finally:
        stop.set()
        thread.join(30)


_login_to: dict[str, str] = {}


@kopf.on.login()
def _login(**_: Any) -> kopf.ConnectionInfo:
    """The mock API server, as a kubeconfig would name it (the token is not checked)."""
    return kopf.ConnectionInfo(server=_login_to["url"], token="kmock")


@contextlib.contextmanager
def operator(kube: Kube, config: Any) -> Iterator[None]:
    """The real operator (kopf, every namespace, standalone) against ``kube`` until the block ends."""
    from orion_ray.operator import handlers
    from orion_ray.operator.run import run

    _login_to["url"] = kube.url
    handlers.configure(config)
    stop, ready = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    from tests.live_orion import free_port

    kube.liveness = f"http://127.0.0.1:{free_port()}/healthz"

    def target() -> None:
        try:
            run(stop_flag=stop, ready_flag=ready, liveness=kube.liveness)
        except BaseException as exc:  # surfaced by the test, not lost in a thread
            failed.append(exc)

    thread = threading.Thread(target=target, name="kopf", daemon=True)
    thread.start()
    try:
        assert ready.wait(180) or failed, "the operator did not start"
        assert not failed, failed
        yield
    finally:
        stop.set()
        thread.join(60)
