"""Node kinds: the built-in ones, the plugins installed through the entry-point group
``orion.pipeline_kinds``, and what a node of a built-in kind must name to run. Pure.

A plugin is an entry point whose name is the kind and whose object has
``workload_spec(node, *, inputs, env, priority) -> dict``: the Orion workload spec (``task`` or
``job``) that runs one attempt of the node. Built in: ``python_task``, ``ray_job``, ``map``
(fan-out: the node's function once per item, see ``mapspec.py``), ``sql`` (DuckDB, ``sql_kind.py``)
and ``image`` (``image_kind.py``). Plugins are looked up once per process (installing one means a
restart, as for any Python package): the lookup walks every installed distribution's metadata, which
cost more than the rest of a submit's parse.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .spec import PipelineSpec, Submission

ENTRY_POINT_GROUP = "orion.pipeline_kinds"
BUILTIN = ("python_task", "ray_job", "map", "sql", "image")  # map: fan-out, see mapspec.py
CODE_KINDS = ("python_task", "ray_job", "map")  # run a tenant's function or command (map: per item)
PLANNED: tuple[str, ...] = ()  # named by the issue, not built yet: none left


@functools.lru_cache(maxsize=1)
def plugin_kinds() -> dict[str, Any]:
    """The installed plugins by kind name (entry points, not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def installed_kinds() -> tuple[str, ...]:
    """Every kind this Orion runs: the built-in ones, then the plugins, sorted."""
    return BUILTIN + tuple(sorted(plugin_kinds()))


def problems(spec: "PipelineSpec", installed: Optional[tuple[str, ...]] = None) -> list[dict[str, str]]:
    """A detail for each node whose kind is not installed, naming the installed kinds."""
    have = installed if installed is not None else installed_kinds()
    out = []
    for n in spec.nodes:
        if n.kind not in have:
            planned = f" ({n.kind} is planned, not built yet)" if n.kind in PLANNED else ""
            out.append(
                {
                    "field": f"dag_spec.nodes.{n.id}.kind",
                    "problem": f"unknown or uninstalled kind {n.kind[:64]!r}{planned}; installed: "
                    + ", ".join(have),
                }
            )
    return out


def runnable_problems(sub: "Submission") -> list[dict[str, str]]:
    """What a node of a built-in kind lacks to run: exactly one of a function (``refs`` or
    ``params.function``) or a shell entrypoint; and an entrypoint cannot return ``outs`` yet.
    Checked at submit, after parsing (a spec can be valid and still not name its code)."""
    from . import sql_kind  # its own rules (sql_kind.py); image nodes: intake.accept

    out = sql_kind.node_problems(sub)
    for n in sub.dag_spec.nodes:
        if n.kind not in CODE_KINDS:
            continue
        field = f"dag_spec.nodes.{n.id}"
        fn, cmd = n.function(sub.refs), n.command()
        if fn and cmd:
            out.append({"field": field, "problem": "give a function or an entrypoint, not both"})
        elif not fn and not cmd:
            out.append(
                {
                    "field": f"{field}.params.function",
                    "problem": f"node {n.id!r} names no code: set params.function or refs.{n.id} "
                    "('package.module:function'), or an entrypoint",
                }
            )
        elif cmd and n.outs:
            out.append(
                {
                    "field": f"{field}.outs",
                    "problem": "a node run as a shell entrypoint cannot return outs yet; use a function",
                }
            )
        elif cmd and n.ins:
            out.append(
                {
                    "field": f"{field}.ins",
                    "problem": "a node run as a shell entrypoint cannot take ins yet; use a function",
                }
            )
    return out
