"""The layers, checked from the source: no import cycle between ``orion_ray`` packages, and the
model and policy layers import nothing above them.

The graph is built with ``ast`` from every module of ``orion_ray`` and ``serve_apps``,
function-local imports included (a cycle hidden in a function is still a cycle; it only fails
later). Imports under ``if TYPE_CHECKING:`` are left out: they never run. A *package* is a
subpackage of ``orion_ray`` (``orion_ray.scheduler``) or one of its top-level modules
(``orion_ray.client``); ``serve_apps`` is one more package, so a cycle
``orion_ray.serving`` → ``serve_apps`` → ``orion_ray.serving`` counts.

Layers (ARCHITECTURE.md): model → policy → adapters → actors → access; each knows only those below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("orion_ray", "serve_apps")

# The model layer: shared types and their parsing, nothing above them.
MODEL = {
    "orion_ray.models",
    "orion_ray.backup_config",
    "orion_ray.errors",
    "orion_ray.status",
    "orion_ray.config",
    "orion_ray.config_original",  # the original design's blocks onto config keys (pure, read by config)
    "orion_ray.worker_pools",
    "orion_ray.schedules",
    "orion_ray.serving_specs",
    "orion_ray.serving_options",  # a deployment's load_balancing / caching blocks (pydantic only)
    "orion_ray.names",
    "orion_ray.input_limits",  # bounds on what a tenant may send (pure, model layer)
    "orion_ray.inference_task",
    "orion_ray.ray_env",  # the allowlist of Ray processes' environment: pure rules, read by config
    "orion_ray.trust",  # stdlib only: the worker imports it too
    "orion_ray.control",
    "orion_ray.observability_config",  # orion.tracing / orion.logging (pydantic only)
    # the OpenTelemetry API and W3C parsing only (the SDK is imported when tracing is turned on):
    # a workload is made under the current span (models.new_workload)
    "orion_ray.tracing",
    "orion_ray.ha_config",  # orion.ha (pydantic only), read by config
    "orion_ray.region_join_config",  # orion.region (pydantic only), read by config
    "orion_ray.serving_limits_config",  # tenants[].serving_limits (pydantic only), read by config
}
# What a worker process imports to run a task or a job: the standard library only (the job's driver
# joins the cluster, so it also imports ``ray``, inside its ``main``).
# The task runner also imports ``orion_ray.trust`` (the denylist it checks again in the worker), which
# is itself held to the standard library here.
WORKER_SIDE = {
    "orion_ray.runtime.task_runner": ("orion_ray.trust",),
    "orion_ray.trust": (),
    "orion_ray.runtime.job_runner": ("ray",),
}


class Edge(NamedTuple):
    src: str  # importing module
    dst: str  # imported module (resolved to a module of the repo)
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line} ({self.src} -> {self.dst})"


def _modules() -> dict[str, Path]:
    out = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            todo.append(child)


def _resolve(name: str) -> Optional[str]:
    """The longest prefix of ``name`` that is a module of the repo."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _edges_of(module: str, path: Path) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    rel = str(path.relative_to(ROOT))
    for node in _imports(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one
            targets = [
                f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names
            ]
        for t in targets:
            dst = _resolve(t)
            if dst is not None and dst != module:
                yield Edge(module, dst, rel, node.lineno)


def _all_edges() -> list[Edge]:
    return [e for m, p in MODULES.items() for e in _edges_of(m, p)]


def package_of(module: str) -> str:
    """``orion_ray.scheduler.core`` → ``orion_ray.scheduler``; ``orion_ray.client`` stays;
    everything under ``serve_apps`` is ``serve_apps``."""
    parts = module.split(".")
    if parts[0] != "orion_ray":
        return parts[0]
    return ".".join(parts[:2])


class Cycle(NamedTuple):
    group: list[str]  # packages that all reach each other
    edges: list[Edge]  # a shortest cycle through the group's first package


def package_cycles(edges: list[Edge]) -> list[Cycle]:
    """Per strongly connected group of packages, the group and a shortest cycle through its first
    package (as edges, each with its file:line)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        a, b = package_of(e.src), package_of(e.dst)
        if a != b:
            graph.setdefault(a, {}).setdefault(b, e)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    cycles = []
    for group in groups:  # a shortest cycle through the group's first package, for the message
        members, start = set(group), group[0]
        prev: dict[str, Optional[str]] = {start: None}
        frontier, found = [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, {})):
                    if w == start:
                        found = v
                        break
                    if w in members and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.insert(1, v)
            v = prev[v]
        path.append(start)
        cycles.append(Cycle(group, [graph[a][b] for a, b in zip(path, path[1:])]))
    return cycles


# -- tests ---------------------------------------------------------------------------------------
def test_the_graph_sees_function_local_and_relative_imports():
    edges = _all_edges()
    assert len(MODULES) > 100 and len(edges) > 300
    found = {(e.src, e.dst) for e in edges}
    assert ("orion_ray.cli", "orion_ray.cluster") in found  # a function-local import


def test_cycle_finder_names_each_edge():
    edges = [
        Edge("orion_ray.a.x", "orion_ray.b.y", "orion_ray/a/x.py", 3),
        Edge("orion_ray.b.y", "orion_ray.c", "orion_ray/b/y.py", 7),
        Edge("orion_ray.c", "orion_ray.a.z", "orion_ray/c.py", 9),
        Edge("orion_ray.c", "orion_ray.d", "orion_ray/c.py", 10),
    ]
    (cycle,) = package_cycles(edges)
    assert cycle.group == ["orion_ray.a", "orion_ray.b", "orion_ray.c"]
    assert [e.where() for e in cycle.edges] == [
        "orion_ray/a/x.py:3 (orion_ray.a.x -> orion_ray.b.y)",
        "orion_ray/b/y.py:7 (orion_ray.b.y -> orion_ray.c)",
        "orion_ray/c.py:9 (orion_ray.c -> orion_ray.a.z)",
    ]
    assert package_cycles(edges[:2]) == []


def cycle_report(edges: list[Edge], cycles: list[Cycle]) -> str:
    """Each cycle's edges, then every import between the packages of its group."""
    out = []
    for cycle in cycles:
        members = set(cycle.group)
        inside = sorted(
            {
                e.where()
                for e in edges
                if package_of(e.src) in members
                and package_of(e.dst) in members
                and package_of(e.src) != package_of(e.dst)
            }
        )
        out.append(
            "cycle:\n  "
            + "\n  ".join(e.where() for e in cycle.edges)
            + f"\nall imports between {sorted(members)}:\n  "
            + "\n  ".join(inside)
        )
    return "\n\n".join(out)


def test_no_import_cycle_between_packages():
    edges = _all_edges()
    cycles = package_cycles(edges)
    assert not cycles, cycle_report(edges, cycles)


def _layer_violations(sources: set[str], allowed) -> list[str]:
    return [
        e.where()
        for e in _all_edges()
        if e.src in sources and e.dst.startswith("orion_ray") and not allowed(e.dst)
    ]


def test_model_modules_import_only_the_model_layer():
    assert MODEL <= set(MODULES), MODEL - set(MODULES)
    bad = _layer_violations(MODEL, lambda dst: dst in MODEL or dst == "orion_ray")
    assert not bad, "\n".join(bad)


def test_policy_imports_only_policy_and_model_modules():
    policy = {m for m in MODULES if m.startswith("orion_ray.policy")}
    bad = _layer_violations(policy, lambda dst: dst in policy or dst in MODEL or dst == "orion_ray")
    assert not bad, "\n".join(bad)


def test_adapters_import_no_actor_or_access_package():
    # the Ray adapter and the store sit below the actors: they reach an actor by its name
    # (orion_ray.names), never through its module
    adapters = {m for m in MODULES if m.startswith(("orion_ray.runtime", "orion_ray.store"))}
    policy = {m for m in MODULES if m.startswith("orion_ray.policy")}
    bad = _layer_violations(
        adapters, lambda dst: dst in adapters or dst in policy or dst in MODEL or dst == "orion_ray"
    )
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(WORKER_SIDE))
def test_worker_side_modules_use_the_standard_library_only(module):
    tree = ast.parse(MODULES[module].read_text())
    stdlib = set(sys.stdlib_module_names) | set(WORKER_SIDE[module])
    bad = []
    for node in _imports(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if not node.level
            else []
        )
        bad += [
            f"{module}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0] not in stdlib and n not in WORKER_SIDE[module]
        ]
        if isinstance(node, ast.ImportFrom) and node.level:
            bad.append(f"{module}:{node.lineno} relative import of the package")
    assert not bad, bad


def test_importing_the_task_runner_leaves_the_heavy_dependencies_out():
    code = (
        "import sys\n"
        "import orion_ray.runtime.task_runner, orion_ray.runtime.job_runner\n"
        "heavy = ('httpx', 'pydantic', 'fastapi', 'yaml', 'numpy', 'ray', 'starlette')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_public_api_still_imports_from_the_package():
    code = (
        "import orion_ray, sys\n"
        "assert 'httpx' not in sys.modules\n"
        "from orion_ray import OrionClient, AsyncOrionClient, WorkloadSpec, Status, "
        "OrionError, QueueFull, Resources\n"
        "assert OrionClient.__module__ == 'orion_ray.client'\n"
        "assert set(orion_ray.__all__) <= set(dir(orion_ray))\n"
        "for name in orion_ray.__all__:\n"
        "    getattr(orion_ray, name)\n"
        "print(orion_ray.__version__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
