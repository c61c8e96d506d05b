"""Large values between nodes: the controller's side of the artifact store (issue 16, item 2).

Where the bytes move, and why there: a node's function returns its outputs as its result, which
travels as every task result does (worker → executor → scheduler → the store, bounded by
``scheduler.max_result_bytes``). When the controller settles the node it takes the outs from that
result; an out whose JSON is over ``inline_max_bytes`` (or that would push the node's inline
outputs over ``MAX_OUTPUT_CHARS``) is written here, in the scheduler's process, to the artifact
store under ``<tenant>/<submission>/<node>/<attempt>/<out>``, and the node row keeps a reference
(``refs.py``). When a downstream node is launched, the controller reads its referenced inputs back
and passes them as ordinary keyword arguments. So only Orion's process holds the store's
credentials: tenant code neither sees them nor an S3 URI it could use (docs/security.md).

Both steps are idempotent: a put of an attempt's output is the same key and bytes again, so a
crash between the put and the reconcile's commit costs a second identical put, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..errors import ValidationError
from ..models import Workload
from ..status import Status
from .artifacts import ArtifactError, ArtifactStore, ArtifactUnavailable, artifact_key, run_prefix
from .records import MAX_OUTPUT_CHARS, SUBMITTED, NodeRun, PipelineRun
from .refs import MARKER, is_ref, make_ref, uri_of

log = logging.getLogger("orion.pipelines")
DEFAULT_INLINE_MAX_BYTES = 16_384
# what an input read back from the store may weigh (what a task result may weigh is smaller: this
# bounds a corrupted or foreign object, not a legitimate one)
MAX_INPUT_BYTES = 64 * 1024 * 1024
_REF_CHARS = 1200  # a reference's JSON at most (its URI is bounded by the key's parts)


def _encode(value: Any) -> Optional[bytes]:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):
        return None  # the engine refuses it with the reason


@dataclass
class DataFlow:
    """Externalises large outputs at settle time and resolves references at launch."""

    store: ArtifactStore
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES
    max_input_bytes: int = MAX_INPUT_BYTES

    def settle_view(
        self,
        run: PipelineRun,
        nodes: list[NodeRun],
        workloads: dict[str, Optional[Workload]],
        outs_of: Mapping[str, list[str]],
    ) -> dict[str, Optional[Workload]]:
        """``workloads`` as the engine should see them: the completed workload of each submitted
        node with its large outs replaced by references (written to the store now); one whose
        result poses as a reference, failed with the reason; one whose put could not be made,
        still running (tried again at the next reconcile)."""
        view = dict(workloads)
        for n in nodes:
            w = workloads.get(n.workload_id or "") if n.status == SUBMITTED else None
            outs = outs_of.get(n.node_id) or []
            if w is None or w.status != Status.COMPLETED or not outs or not isinstance(w.result, dict):
                continue
            try:
                result = self.externalize(run, n, outs, w.result)
            except ArtifactUnavailable:
                log.warning(
                    "run %s node %s: artifact store unavailable", run.run_id, n.node_id, exc_info=True
                )
                view[w.workload_id] = w.model_copy(update={"status": Status.RUNNING})
                continue
            except (ArtifactError, ValueError) as exc:
                view[w.workload_id] = w.model_copy(update={"status": Status.FAILED, "error": str(exc)})
                continue
            if result is not w.result:
                view[w.workload_id] = w.model_copy(update={"result": result})
        return view

    def externalize(
        self, run: PipelineRun, n: NodeRun, outs: list[str], result: dict[str, Any]
    ) -> dict[str, Any]:
        """``result`` with each large out written to the store and replaced by its reference (the
        same object when nothing moved). ``ValueError`` when an out poses as a reference."""
        posing = [o for o in outs if is_ref(result.get(o))]
        if posing:
            raise ValueError(
                f"output(s) {', '.join(posing)}: {MARKER!r} is reserved for Orion's artifact references"
            )
        sizes: dict[str, tuple[int, bytes]] = {}
        for o in outs:
            if o in result:
                data = _encode(result[o])
                if data is not None:
                    sizes[o] = (len(data), data)
        big = [o for o, (size, _) in sizes.items() if size > self.inline_max_bytes]

        def inline_chars() -> int:  # the node's outputs as the engine measures them, roughly
            return sum((_REF_CHARS if o in big else size) + len(o) + 6 for o, (size, _) in sizes.items())

        # the node's inline outputs together stay under the engine's bound: the largest go first
        for o, _ in sorted(sizes.items(), key=lambda kv: -kv[1][0]):
            if inline_chars() <= MAX_OUTPUT_CHARS:
                break
            if o not in big:
                big.append(o)
        if not big:
            return result
        out = dict(result)
        for o in big:
            size, data = sizes[o]
            key = artifact_key(run.tenant_id, run.submission_id, n.node_id, n.attempt, o)
            uri = self.store.put(key, data)
            out[o] = make_ref(uri, size, hashlib.sha256(data).hexdigest())
        return out

    def read(self, run: PipelineRun, ref: Any, *, max_bytes: Optional[int] = None) -> bytes:
        """The bytes of a reference found in one of ``run``'s node rows, read only under the
        run's own prefix (a reference from another tenant's or run's namespace is refused)."""
        uri = uri_of(ref)
        if uri is None:
            raise ArtifactError("not an artifact reference")
        data = self.store.get(
            uri,
            within=run_prefix(run.tenant_id, run.submission_id),
            max_bytes=self.max_input_bytes if max_bytes is None else max_bytes,
        )
        want = ref.get("sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise ArtifactError(f"artifact {uri} does not match its checksum")
        return data

    def resolve(self, run: PipelineRun, inputs: dict[str, Any]) -> dict[str, Any]:
        """``inputs`` with every reference replaced by its value (the node's function gets values).
        ``ArtifactUnavailable``: try later; ``ValidationError`` (naming the input): the node fails."""
        if not any(is_ref(v) for v in inputs.values()):
            return inputs
        out = dict(inputs)
        for name, value in inputs.items():
            if not is_ref(value):
                continue
            try:
                out[name] = json.loads(self.read(run, value))
            except ArtifactUnavailable:
                raise
            except (ArtifactError, ValueError) as exc:
                raise ValidationError(
                    f"input {name!r} cannot be read from the artifact store: {exc}",
                    [{"field": f"ins.{name}", "problem": str(exc)[:500]}],
                ) from None
        return out
