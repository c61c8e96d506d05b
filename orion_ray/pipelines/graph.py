"""The graph rules of a pipeline spec: ids, edges, cycles and where each input comes from. Pure.

An input ``x`` of node N is bound to the one node upstream of N (reachable backwards through
edges) that lists ``x`` in its ``outs``. None is an unbound input; more than one is ambiguous;
both are refused at submit with the node and the input named.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .spec import PipelineSpec


def problems(spec: "PipelineSpec") -> list[dict[str, str]]:
    """Every graph rule ``spec`` breaks, as the contract's details (``field``, ``problem``)."""
    out: list[dict[str, str]] = []
    counts = Counter(n.id for n in spec.nodes)
    for node_id, n in counts.items():
        if n > 1:
            out.append(
                {"field": f"dag_spec.nodes.{node_id}", "problem": f"node id {node_id!r} is used {n} times"}
            )
    ids = set(counts)
    for i, e in enumerate(spec.edges):
        for end, name in (("from", e.source), ("to", e.target)):
            if name not in ids:
                out.append(
                    {"field": f"dag_spec.edges.{i}.{end}", "problem": f"no node has the id {name[:64]!r}"}
                )
    if out:
        return out  # the rest needs unique ids and known ends
    cycle = find_cycle(spec)
    if cycle:
        path = " → ".join(cycle + [cycle[0]])
        return [
            {"field": f"dag_spec.nodes.{cycle[0]}", "problem": f"node {cycle[0]!r} is on a cycle: {path}"}
        ]
    for node_id, port, producers in _bindings(spec):
        field = f"dag_spec.nodes.{node_id}.ins.{port}"
        if not producers:
            out.append(
                {
                    "field": field,
                    "problem": f"input {port!r} of node {node_id!r} is unbound: no node upstream "
                    "of it (through edges) lists it in its outs",
                }
            )
        elif len(producers) > 1:
            out.append(
                {
                    "field": field,
                    "problem": f"input {port!r} of node {node_id!r} is ambiguous: produced upstream by "
                    + ", ".join(repr(p) for p in producers),
                }
            )
    return out


def find_cycle(spec: "PipelineSpec") -> Optional[list[str]]:
    """The nodes of one cycle in order, or None for a DAG. Iterative (a 1,000-node chain must not
    hit Python's recursion limit)."""
    succ: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
    for e in spec.edges:
        succ[e.source].append(e.target)
    colour: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in succ:
        if start in colour:
            continue
        path: list[str] = [start]
        iters = [iter(succ[start])]
        colour[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                iters.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt) :]
            elif nxt not in colour:
                colour[nxt] = 1
                path.append(nxt)
                iters.append(iter(succ[nxt]))
    return None


def topological(spec: "PipelineSpec") -> list[str]:
    """Node ids in an order where every node comes after its upstream ones (spec order kept
    among independent nodes). The spec must be a DAG."""
    indeg = {n.id: 0 for n in spec.nodes}
    succ: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
    for e in spec.edges:
        indeg[e.target] += 1
        succ[e.source].append(e.target)
    ready = [n for n, d in indeg.items() if d == 0]
    order: list[str] = []
    while ready:
        cur = ready.pop(0)
        order.append(cur)
        for t in succ[cur]:
            indeg[t] -= 1
            if indeg[t] == 0:
                ready.append(t)
    return order


def ancestors(spec: "PipelineSpec") -> dict[str, set[str]]:
    """Each node's upstream nodes, direct or not (the spec must be a DAG)."""
    up = spec.upstream()
    out: dict[str, set[str]] = {}
    for node_id in topological(spec):
        acc: set[str] = set()
        for parent in up[node_id]:
            acc.add(parent)
            acc |= out[parent]
        out[node_id] = acc
    return out


def binding(spec: "PipelineSpec") -> dict[str, dict[str, str]]:
    """For each node, input name → the node that produces it (a valid spec: one producer each)."""
    out: dict[str, dict[str, str]] = {n.id: {} for n in spec.nodes}
    for node_id, port, producers in _bindings(spec):
        if len(producers) == 1:
            out[node_id][port] = producers[0]
    return out


def _bindings(spec: "PipelineSpec") -> list[tuple[str, str, list[str]]]:
    anc = ancestors(spec)
    makers: dict[str, list[str]] = {}  # port → the nodes listing it in their outs, in spec order
    for n in spec.nodes:
        for port in dict.fromkeys(n.outs):
            makers.setdefault(port, []).append(n.id)
    result = []
    for n in spec.nodes:  # per input, only that port's producers: not every node (1,000² at 1,000)
        for port in n.ins:
            producers = [a for a in makers.get(port, ()) if a in anc[n.id]]
            result.append((n.id, port, producers))
    return result
