"""The vLLM engine for GPU nodes: vLLM's async engine, imported only when a replica builds it.

Tensor parallelism: the replica's deployment reserves one STRICT_PACK placement-group bundle set
(one GPU per bundle); vLLM's Ray executor then places its workers in that same group.
"""

from __future__ import annotations

import importlib.util
import uuid
from typing import Any, AsyncIterator, Optional

from .base import Chunk, Engine, EngineUnavailable, Generation, Sampling


def vllm_available() -> Optional[str]:
    """None when vLLM can run here, else why not (for skip reasons and clear errors)."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm, on a machine with a CUDA GPU)"
    try:
        import torch

        if not torch.cuda.is_available():
            return "vLLM is installed but no CUDA GPU is visible"
    except ImportError:
        return "vLLM is installed but torch is not importable"
    return None


class VllmEngine(Engine):
    """``model``: a local path or hub id vLLM can load; other keys go to ``AsyncEngineArgs``."""

    name = "vllm"

    def __init__(
        self, model: str, model_name: Optional[str] = None, tensor_parallel: int = 1, **engine_args: Any
    ):
        why = vllm_available()
        if why:
            raise EngineUnavailable(why)
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        args = dict(engine_args)
        args.setdefault("tensor_parallel_size", tensor_parallel)
        if tensor_parallel > 1:
            args.setdefault("distributed_executor_backend", "ray")
        self.model_name = model_name or model
        self._engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=model, **args))

    def _params(self, sampling: Sampling):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
        )

    async def generate(self, prompt: str, sampling: Sampling) -> Generation:
        out = None
        async for out in self._engine.generate(  # noqa: B007  (the last output is the answer)prompt, self._params(sampling),
            request_id=uuid.uuid4().hex
        ):
            pass
        o = out.outputs[0]
        return Generation(o.text, len(out.prompt_token_ids), len(o.token_ids), o.finish_reason or "stop")

    async def stream(self, prompt: str, sampling: Sampling) -> AsyncIterator[Chunk]:
        sent, last = 0, None
        async for out in self._engine.generate(prompt, self._params(sampling), request_id=uuid.uuid4().hex):
            last = out
            text = out.outputs[0].text
            if len(text) > sent:
                yield Chunk(text[sent:])
                sent = len(text)
        o = last.outputs[0]
        yield Chunk(
            "",
            o.finish_reason or "stop",
            {"prompt_tokens": len(last.prompt_token_ids), "completion_tokens": len(o.token_ids)},
        )

    async def check_health(self) -> None:
        await self._engine.check_health()
