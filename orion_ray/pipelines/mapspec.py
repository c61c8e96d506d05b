"""The ``map`` node kind (fan-out) as the spec writes it, and the rules a map node must keep. Pure.

A map node calls its function once per item of a list, each call an ordinary Orion workload::

    - id: score
      kind: map
      ins: [shards, model_uri]      # shards: a list from upstream; model_uri: passed whole
      outs: [score]                 # each call returns {"score": …}; the node's score is the list
      params: {function: "my_pkg.steps:score_one", threshold: 0.5}
      map:
        with_param: shards          # map over this input (Argo's withParam) …
        # with_items: [a, b, c]     # … or over a literal list (Argo's withItems)
        concurrency: 4              # items in flight at once (a Kubernetes Job's parallelism)
        min_success_ratio: 0.9      # the node succeeds if at least this share of items did
        max_items: 10000            # more items: a 422 at submit, or the node fails at run time
        item_arg: item              # the keyword the item is passed as

The Argo spellings ``withItems`` / ``withParam`` and the Kubernetes ``parallelism`` are accepted
as well; the stored body keeps the snake_case names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from ..input_limits import LimitError, check_value

if TYPE_CHECKING:
    from .spec import Node, Submission

MAP = "map"
MAX_ITEMS = 10_000  # items of one map node (the cap)
DEFAULT_CONCURRENCY = 100
_PORT = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class MapSpec(BaseModel):
    """A map node's ``map`` block (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    with_items: Optional[list[Any]] = Field(None, validation_alias=AliasChoices("with_items", "withItems"))
    with_param: Optional[str] = Field(
        None, validation_alias=AliasChoices("with_param", "withParam"), pattern=_PORT
    )
    concurrency: int = Field(
        DEFAULT_CONCURRENCY, ge=1, le=MAX_ITEMS, validation_alias=AliasChoices("concurrency", "parallelism")
    )
    min_success_ratio: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    max_items: int = Field(MAX_ITEMS, ge=1, le=MAX_ITEMS)
    item_arg: str = Field("item", pattern=_PORT)

    @field_validator("with_items", mode="before")
    @classmethod
    def _items(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) > MAX_ITEMS:  # before walking 10,001 values
                raise ValueError(f"{len(v)} items; at most {MAX_ITEMS}")
            try:
                check_value(v, "with_items")
            except LimitError as exc:
                raise ValueError(str(exc)) from None
        return v

    def allowed_failures(self, total: int) -> int:
        """How many of ``total`` items may fail (or be cancelled) with the node still succeeding."""
        need = _ceil_share(total, self.min_success_ratio)
        return total - need


def _ceil_share(total: int, ratio: float) -> int:
    """The fewest successes out of ``total`` that reach ``ratio`` (a float's noise forgiven)."""
    exact = total * ratio
    floor = int(exact)
    return floor if exact - floor < 1e-9 else floor + 1


def problems(sub: "Submission") -> list[dict[str, str]]:
    """What the map nodes of a parsed submission break (and a ``map`` block on another kind)."""
    out: list[dict[str, str]] = []
    for n in sub.dag_spec.nodes:
        field = f"dag_spec.nodes.{n.id}"
        if n.kind != MAP:
            if n.map is not None:
                out.append({"field": f"{field}.map", "problem": "only a node of kind 'map' has a map block"})
            continue
        out += _node_problems(n, sub.refs, field)
    return out


def _node_problems(n: "Node", refs: dict[str, str], field: str) -> list[dict[str, str]]:
    m = n.map
    if m is None:
        return [
            {
                "field": f"{field}.map",
                "problem": "a map node needs a map block with with_items (a list) or with_param "
                "(one of its ins)",
            }
        ]
    if (m.with_items is None) == (m.with_param is None):
        return [{"field": f"{field}.map", "problem": "give exactly one of with_items and with_param"}]
    out = []
    if m.with_param is not None and m.with_param not in n.ins:
        out.append(
            {
                "field": f"{field}.map.with_param",
                "problem": f"{m.with_param!r} is not one of the node's ins ({', '.join(n.ins) or 'none'})",
            }
        )
    if m.with_items is not None and len(m.with_items) > m.max_items:
        out.append(
            {
                "field": f"{field}.map.with_items",
                "problem": f"{len(m.with_items)} items, over max_items ({m.max_items})",
            }
        )
    if m.item_arg in n.ins or m.item_arg in n.call_params():
        out.append(
            {
                "field": f"{field}.map.item_arg",
                "problem": f"{m.item_arg!r} is also an input or a param of this node: the item needs "
                "its own keyword (set map.item_arg)",
            }
        )
    if n.command() is not None:
        out.append(
            {
                "field": f"{field}.entrypoint",
                "problem": "a map node calls a function per item (params.function or refs), "
                "not an entrypoint",
            }
        )
    return out


def item_inputs(node: "Node", inputs: dict[str, Any], item: Any) -> dict[str, Any]:
    """The keyword arguments of one item's call beyond the params: the node's other ins whole,
    and the item under ``item_arg``."""
    m = node.map
    assert m is not None
    return {**{k: v for k, v in inputs.items() if k != m.with_param}, m.item_arg: item}


def items_of(node: "Node", inputs: dict[str, Any]) -> tuple[Optional[list[Any]], Optional[str]]:
    """The list a map node maps over (its ``with_items``, or the upstream value of
    ``with_param``), or why it cannot be mapped over."""
    m = node.map
    assert m is not None
    if m.with_items is not None:
        return list(m.with_items), None
    value = inputs.get(m.with_param or "")
    if not isinstance(value, list):
        return None, f"input {m.with_param!r} is not a list (it is {_kind(value)}): a map needs a list"
    if len(value) > m.max_items:
        return None, f"input {m.with_param!r} has {len(value)} items, over max_items ({m.max_items})"
    return value, None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
