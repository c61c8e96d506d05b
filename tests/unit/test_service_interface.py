"""The scheduler's interface is declared once (``orion_ray.service.SchedulerService``); everything
that implements, forwards or calls it is checked against it here, so drift fails a test:

- ``Scheduler`` implements every protocol method with the same signature (names, kinds, defaults,
  annotations) and async;
- ``SchedulerActor`` exposes exactly the protocol plus its own three, forwards every argument
  (``make_room``'s ``hold_s`` too) and waits for start except where ``START_FREE`` says why not;
- the REST API calls on its backend only protocol methods (found with ``ast``), and ``ActorBackend``
  forwards every one of them;
- ``OrionClient`` and ``AsyncOrionClient`` (and their handles) have the same methods with the same
  parameters, async ones ``async def``;
- every client method the README, ``docs/`` or the contract (``API.md``) shows exists.

Each checker is shown to catch drift on deliberately drifted fakes (the ``*_catches_*`` tests).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any, Optional

import pytest

from orion_ray.async_client import AsyncOrionClient, AsyncWorkloadHandle
from orion_ray.client import OrionClient, WorkloadHandle
from orion_ray.control import CONTROL_PARAM
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.actor import SchedulerActor
from orion_ray.service import (
    SERVICE_METHODS,
    START_FREE,
    SchedulerService,
    guarded_signature,
    service_methods,
)

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "orion_ray" / "api"
ACTOR_OWN = {"ensure_started", "config_dict", "shutdown"}  # the actor's lifecycle, not the service
# the contract lives in shared/ beside the repository (a worktree sits one level deeper)
CONTRACT = next(
    (p for p in (ROOT.parent / "shared" / "API.md", ROOT.parent.parent / "shared" / "API.md") if p.exists()),
    ROOT.parent / "shared" / "API.md",
)


# == the checkers ==================================================================================
def _signature(fn: Any) -> inspect.Signature:
    """With annotations evaluated, so ``Optional[str]`` and ``str | None`` compare equal."""
    return inspect.signature(fn, eval_str=True)


# Ray adds this keyword to every method of a class it wraps with ``ray.remote`` (its tracing hook,
# in place, on the class itself): once a test in the same process has deployed the actor, the
# generated methods carry it. It is Ray's, not part of the declared interface.
RAY_ADDED = frozenset({"_ray_trace_ctx"})


def _params(sig: inspect.Signature, annotations: bool = True) -> list[tuple]:
    return [
        (p.name, p.kind.description, p.default, p.annotation if annotations else None)
        for p in sig.parameters.values()
        if p.name not in RAY_ADDED
    ]


def service_drift(impl: type, protocol: type = SchedulerService, *, guarded: bool = False) -> list[str]:
    """Every way ``impl`` differs from ``protocol``: a missing method, a sync one, or a signature
    (parameter names, kinds, defaults, annotations, return annotation) that is not the same.
    ``guarded``: ``impl`` is the actor, whose methods also take the control plane's credential
    (the signature ``service.guarded_signature`` derives)."""
    problems = []
    for name in service_methods(protocol):
        declared = getattr(protocol, name)
        got = getattr(impl, name, None)
        if got is None or not callable(got):
            problems.append(f"{impl.__name__}.{name}: missing")
            continue
        if not inspect.iscoroutinefunction(got):
            problems.append(f"{impl.__name__}.{name}: not async")
        want = guarded_signature(name, protocol) if guarded else _signature(declared)
        have = _signature(got)
        if _params(want) != _params(have):
            problems.append(f"{impl.__name__}.{name}{have} != declared {name}{want}")
        elif want.return_annotation != have.return_annotation:
            problems.append(
                f"{impl.__name__}.{name} returns {have.return_annotation}, declared {want.return_annotation}"
            )
    return problems


def _public_methods(cls: type) -> dict[str, Any]:
    """Public callables of ``cls`` (a property counts by name: ``handle.status`` is one)."""
    out = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property):
            out[name] = value.fget
        elif inspect.isfunction(value):
            out[name] = value
    return out


# Methods only one side has by nature: a sync client closes, an async one acloses.
CLIENT_OWN = {"close", "aclose"}


def client_drift(sync_cls: type, async_cls: type) -> list[str]:
    """Every way the async client differs from the sync one: a method only one has, a sync method
    on the async side (or the reverse), different parameters (names, kinds, defaults, annotations;
    return types differ by nature: a handle and its async twin)."""
    sync_m = {n: f for n, f in _public_methods(sync_cls).items() if n not in CLIENT_OWN}
    async_m = {n: f for n, f in _public_methods(async_cls).items() if n not in CLIENT_OWN}
    problems = [f"{async_cls.__name__} lacks {n}" for n in sorted(set(sync_m) - set(async_m))]
    problems += [f"{sync_cls.__name__} lacks {n}" for n in sorted(set(async_m) - set(sync_m))]
    for name in sorted(set(sync_m) & set(async_m)):
        s, a = sync_m[name], async_m[name]
        if inspect.iscoroutinefunction(s):
            problems.append(f"{sync_cls.__name__}.{name} is async")
        a_is_property = isinstance(inspect.getattr_static(async_cls, name), property)
        if not inspect.iscoroutinefunction(a) and not a_is_property:
            problems.append(f"{async_cls.__name__}.{name} is not async")
        if _params(_signature(s)) != _params(_signature(a)):
            problems.append(
                f"{name}: {sync_cls.__name__}{_signature(s)} != {async_cls.__name__}{_signature(a)}"
            )
    # the constructors take the same arguments (transport and sleep differ in type by nature,
    # and sleep's default is time.sleep on one side, asyncio.sleep on the other)
    s_init, a_init = _signature(sync_cls.__init__), _signature(async_cls.__init__)
    if [(n, k, None if n == "sleep" else d) for n, k, d, _ in _params(s_init)] != [
        (n, k, None if n == "sleep" else d) for n, k, d, _ in _params(a_init)
    ]:
        problems.append(f"constructors differ: {s_init} != {a_init}")
    return problems


BACKEND_GETTERS = {"backend_of", "backend_or_none"}


def backend_calls(source: str) -> set[str]:
    """Methods called on the scheduler backend in ``source``: ``backend_of(request).m(...)``,
    ``b.m(...)`` where ``b = backend_or_none(...)`` (or ``backend_of``), ``hasattr(b, "m")``, and
    the names ``ActorBackend`` forwards by string (``self._call("m", ...)``)."""
    tree = ast.parse(source)

    def is_getter(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BACKEND_GETTERS
        )

    holders = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_getter(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }

    def is_backend(node: ast.AST) -> bool:
        return is_getter(node) or (isinstance(node, ast.Name) and node.id in holders)

    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and is_backend(f.value):
            found.add(f.attr)
        elif (
            isinstance(f, ast.Name)
            and f.id == "hasattr"
            and len(node.args) == 2
            and is_backend(node.args[0])
            and isinstance(node.args[1], ast.Constant)
        ):
            found.add(node.args[1].value)
        elif (
            isinstance(f, ast.Attribute)
            and f.attr == "_call"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def api_backend_calls() -> dict[str, set[str]]:
    """``backend_calls`` of every module of ``orion_ray/api``, by file name."""
    return {p.name: backend_calls(p.read_text()) for p in sorted(API_DIR.glob("*.py"))}


CLIENT_CALL = re.compile(r"\bclient\.([a-z_]+)\(")
HANDLE_CALL = re.compile(r"\b(?:wl|workload|handle|h)\.([a-z_]+)\(")
BARE_CALL = re.compile(r"`([a-z_]+)\(\)`")


def documented_calls(text: str) -> tuple[set[str], set[str]]:
    """(client methods, handle methods) a document shows: ``client.m(`` and ``wl.m(`` anywhere,
    and ```m()``` in a paragraph about the SDK."""
    client, handle = set(CLIENT_CALL.findall(text)), set(HANDLE_CALL.findall(text))
    for paragraph in re.split(r"\n\s*\n", text):
        if "SDK" in paragraph or "OrionClient" in paragraph:
            client |= set(BARE_CALL.findall(paragraph))
    return client, handle


def missing_documented(text: str) -> list[str]:
    """Documented calls that neither client (or handle) has."""
    client, handle = documented_calls(text)
    problems = [
        f"client.{m}"
        for m in sorted(client)
        if not (hasattr(OrionClient, m) and hasattr(AsyncOrionClient, m))
    ]
    problems += [
        f"handle.{m}"
        for m in sorted(handle)
        if not (hasattr(WorkloadHandle, m) and hasattr(AsyncWorkloadHandle, m))
    ]
    return problems


# == the real classes ==============================================================================
def test_the_protocol_declares_the_service_with_a_docstring_each():
    assert len(SERVICE_METHODS) == len(set(SERVICE_METHODS)) >= 25
    for name in SERVICE_METHODS:
        fn = getattr(SchedulerService, name)
        assert inspect.iscoroutinefunction(fn), name
        assert (fn.__doc__ or "").strip(), f"{name} has no docstring"
    assert set(START_FREE) <= set(SERVICE_METHODS)
    assert all(reason.strip() for reason in START_FREE.values())


def test_the_scheduler_implements_the_protocol():
    assert service_drift(Scheduler) == []


def test_the_actor_implements_the_protocol_and_nothing_undeclared():
    assert service_drift(SchedulerActor, guarded=True) == []
    assert set(_public_methods(SchedulerActor)) == set(SERVICE_METHODS) | ACTOR_OWN
    for name in ACTOR_OWN:
        assert inspect.iscoroutinefunction(getattr(SchedulerActor, name)), name


class RecordingScheduler:
    """Records every call (and the start) so the actor's forwarding can be checked in process."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.started_at: Optional[float] = None

    async def start(self):
        self.calls.append(("start",))
        self.started_at = 1.0

    def __getattr__(self, name):
        async def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return name

        return method


def _bare_actor(scheduler) -> SchedulerActor:
    """A ``SchedulerActor`` without its constructor (which needs Ray) over ``scheduler``."""
    actor = SchedulerActor.__new__(SchedulerActor)
    actor.scheduler, actor._start_lock = scheduler, None
    return actor


@pytest.mark.parametrize("name", SERVICE_METHODS)
def test_the_actor_forwards_every_argument_and_waits_for_start_unless_start_free(name):
    params = list(inspect.signature(getattr(SchedulerService, name)).parameters)[1:]
    args = tuple(f"arg-{p}" for p in params)  # every parameter given: a dropped one shows
    sched = RecordingScheduler()
    assert asyncio.run(getattr(_bare_actor(sched), name)(*args)) == name
    started = [("start",)] if name not in START_FREE else []
    assert sched.calls == started + [(name, args, {})]


def test_the_actor_make_room_forwards_hold_s_by_keyword():
    sched = RecordingScheduler()
    asyncio.run(_bare_actor(sched).make_room([{"GPU": 1.0}], hold_s=5.0))
    assert sched.calls[-1] == ("make_room", ([{"GPU": 1.0}],), {"hold_s": 5.0})
    # and a caller's wrong keyword is refused from the signature, as Ray refuses it
    with pytest.raises(TypeError):
        inspect.signature(SchedulerActor.make_room).bind(None, [], hold_seconds=5)


def test_the_api_calls_only_protocol_methods_and_the_actor_backend_forwards_them():
    calls = api_backend_calls()
    routes = set().union(*(found for name, found in calls.items() if name != "serve_app.py"))
    # the finder still sees the API's calls (if this fails, the API reaches its backend another way)
    assert {"submit", "get", "list", "cancel", "health", "nodes", "drain", "keyring"} <= routes
    undeclared = {f"{name}: {m}" for name, found in calls.items() for m in found if m not in SERVICE_METHODS}
    assert undeclared == set()
    from orion_ray.api.serve_app import ActorBackend

    assert routes - set(_public_methods(ActorBackend)) == set()


def test_the_sync_and_async_clients_have_the_same_calls():
    assert client_drift(OrionClient, AsyncOrionClient) == []
    assert client_drift(WorkloadHandle, AsyncWorkloadHandle) == []


def _docs() -> list[Path]:
    """The README, the reference under docs/ (if any) and the contract (if beside the checkout)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md")), CONTRACT]
    return [d for d in docs if d.exists()]


def test_every_documented_client_call_exists():
    text = "\n\n".join(d.read_text() for d in _docs())
    client, handle = documented_calls(text)
    # the finder still matches the docs (the first workload is shown in every version of them)
    assert "submit_workload" in client and "wait_for_completion" in handle
    assert missing_documented(text) == []


# == the checkers catch drift ======================================================================
class Faithful:
    """The protocol implemented as declared (spelled differently where that is the same type)."""


for _name in SERVICE_METHODS:
    setattr(Faithful, _name, getattr(SchedulerService, _name))


def _drifted(name: str, fn: Any) -> type:
    return type(f"Drifted_{name}", (Faithful,), {name: fn})


async def _renamed_keyword(
    self, node_id: str, who: str = "admin", why: Optional[str] = None
) -> dict[str, Any]: ...


async def _changed_default(
    self, node_id: str, who: str = "admin", deadline_s: float = 300.0, reason: Optional[str] = None
) -> dict[str, Any]: ...


async def _dropped_hold_s(
    self,
    bundles: list[dict[str, float]],
    tenant_id: Optional[str] = None,
    priority: str = "high",
    who: str = "serving",
) -> dict[str, Any]: ...


def _sync_health(self) -> dict[str, Any]: ...


async def _other_annotation(self, workload_id: str, tenant_id: Optional[int] = None) -> dict[str, Any]: ...


async def _other_return(self) -> str: ...


async def _same_in_other_words(self, workload_id: str, tenant_id: str | None = None) -> dict[str, Any]: ...


class Missing(Faithful):
    pass


Missing.queue = None  # type: ignore[assignment]


DRIFTED = [
    pytest.param(Missing, "missing", id="missing-method"),
    pytest.param(_drifted("cordon", _renamed_keyword), "cordon", id="renamed-keyword"),
    pytest.param(_drifted("drain", _changed_default), "drain", id="changed-default"),
    pytest.param(_drifted("make_room", _dropped_hold_s), "make_room", id="dropped-parameter"),
    pytest.param(_drifted("health", _sync_health), "not async", id="sync-method"),
    pytest.param(_drifted("get", _other_annotation), "get", id="other-annotation"),
    pytest.param(_drifted("keyring", _other_return), "returns", id="other-return-type"),
]


@pytest.mark.parametrize("impl,expected", DRIFTED)
def test_service_drift_catches(impl, expected):
    problems = service_drift(impl)
    assert len(problems) == 1 and expected in problems[0], problems


def test_service_drift_accepts_the_same_signature_in_other_words():
    assert service_drift(Faithful) == []
    assert service_drift(_drifted("get", _same_in_other_words)) == []


class SyncFake:
    def __init__(self, url: Optional[str] = None, sleep: Any = None):
        pass

    def nodes(self, include_ended: bool = True) -> dict: ...

    def drain(self, node_id: str, deadline_s: float = 300.0) -> dict: ...

    def close(self) -> None: ...


def _async_fake(**methods: Any) -> type:
    async def nodes(self, include_ended: bool = True) -> dict: ...

    async def drain(self, node_id: str, deadline_s: float = 300.0) -> dict: ...

    def __init__(self, url: Optional[str] = None, sleep: Any = None):
        pass

    body = {"__init__": __init__, "nodes": nodes, "drain": drain, **methods}
    return type("AsyncFake", (), {k: v for k, v in body.items() if v is not None})


async def _drain_other_default(self, node_id: str, deadline_s: float = 60.0) -> dict: ...


def _sync_drain(self, node_id: str, deadline_s: float = 300.0) -> dict: ...


async def _extra(self) -> dict: ...


def _other_init(self, url: Optional[str] = None, wait: Any = None):
    pass


CLIENT_DRIFT = [
    pytest.param(_async_fake(nodes=None), "lacks nodes", id="async-lacks-a-method"),
    pytest.param(_async_fake(extra=_extra), "SyncFake lacks extra", id="sync-lacks-a-method"),
    pytest.param(_async_fake(drain=_drain_other_default), "drain:", id="other-default"),
    pytest.param(_async_fake(drain=_sync_drain), "is not async", id="not-async"),
    pytest.param(_async_fake(__init__=_other_init), "constructors differ", id="constructor"),
]


@pytest.mark.parametrize("async_cls,expected", CLIENT_DRIFT)
def test_client_drift_catches(async_cls, expected):
    problems = client_drift(SyncFake, async_cls)
    assert len(problems) == 1 and expected in problems[0], problems


def test_client_drift_accepts_twins():
    assert client_drift(SyncFake, _async_fake()) == []


API_SNIPPET = '''
def build(app):
    def backend_of(request): ...

    async def route(request):
        return await backend_of(request).submit({}, "t")

    async def other(request):
        b = backend_or_none(request)
        if b is not None and hasattr(b, "keyring"):
            await b.keyring()
        return await backend_of(request).submitt({})  # a typo the protocol does not have

    async def capacity(backend):
        return backend.list()  # another backend (capacity reservations): not the scheduler's
'''


def test_backend_calls_catches_a_call_the_protocol_does_not_declare():
    found = backend_calls(API_SNIPPET)
    assert found == {"submit", "keyring", "submitt"}
    assert found - set(SERVICE_METHODS) == {"submitt"}


def test_missing_documented_catches_a_call_no_client_has():
    text = (
        "From Python:\n\n```python\nclient = OrionClient()\nwl = client.submit_workload()\n"
        "client.teleport()\nwl.wait_for_completion()\n```\n\nThe SDK has the same calls "
        "(`nodes()`, `levitate()`).\n\nUnrelated: `serving_gpu_usage()`.\n"
    )
    assert missing_documented(text) == ["client.levitate", "client.teleport"]


def test_the_actor_wrapped_by_ray_still_follows_the_protocol():
    """``ray.remote`` adds its tracing keyword to the class's methods in place (so a test that
    deployed the actor earlier in the process changes what later tests see); that is not drift."""
    import ray

    class Wrapped(SchedulerActor):
        pass

    ray.remote(Wrapped)  # no cluster needed: wrapping only edits the class
    assert service_drift(Wrapped, guarded=True) == []


# == the control plane's credential ================================================================
def test_every_actor_method_takes_the_credential_keyword_only_and_it_is_derived():
    for name in SERVICE_METHODS:
        params = inspect.signature(getattr(SchedulerActor, name)).parameters
        assert params[CONTROL_PARAM].kind is inspect.Parameter.KEYWORD_ONLY, name
        names = [p for p in params if p not in RAY_ADDED]  # Ray's tracing keyword, once wrapped
        assert names == [*inspect.signature(getattr(SchedulerService, name)).parameters, CONTROL_PARAM]
    # the declared service itself does not carry it (the scheduler class does not check it)
    assert all(
        CONTROL_PARAM not in inspect.signature(getattr(Scheduler, n)).parameters for n in SERVICE_METHODS
    )


@pytest.mark.parametrize("name", SERVICE_METHODS)
def test_a_guarded_actor_refuses_every_method_without_the_credential(name):
    from orion_ray.errors import Forbidden

    params = list(inspect.signature(getattr(SchedulerService, name)).parameters)[1:]
    args = tuple(f"arg-{p}" for p in params)
    sched = RecordingScheduler()
    actor = _bare_actor(sched)
    actor._control_token = "the-token"
    for given in (None, "wrong", ""):
        with pytest.raises(Forbidden):
            asyncio.run(getattr(actor, name)(*args, control_token=given))
    assert sched.calls == []  # refused before anything ran, recovery included
    assert asyncio.run(getattr(actor, name)(*args, control_token="the-token")) == name
    # the credential is the actor's, never forwarded to the scheduler
    assert sched.calls[-1] == (name, args, {})


def test_the_actor_s_own_lifecycle_methods_and_ray_call_need_the_credential_too():
    from orion_ray.control import guarded_ray_call
    from orion_ray.errors import Forbidden

    actor = _bare_actor(RecordingScheduler())
    actor._control_token = "the-token"
    with pytest.raises(Forbidden):
        asyncio.run(actor.shutdown())
    with pytest.raises(Forbidden):
        asyncio.run(actor.config_dict(control_token="wrong"))
    ray_call = guarded_ray_call()
    with pytest.raises(Forbidden):
        ray_call(actor, lambda self: self._control_token)
    assert ray_call(actor, lambda self: "ran", control_token="the-token") == "ran"
