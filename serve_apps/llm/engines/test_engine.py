"""A deterministic engine for fast tests: its answer is a function of the prompt, and faults
(errors, slowness, a failing health check) can be injected at start or at run time."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import AsyncIterator, Optional

from .base import Chunk, Engine, Generation, Sampling, apply_stop

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
)


class InjectedFault(RuntimeError):
    """An error the test engine was told to raise."""


class TestEngine(Engine):
    """``error_rate``: share of requests that fail; ``latency_s``: added per request;
    ``healthy``: what ``check_health`` says; ``seed`` makes the error draws repeatable."""

    __test__ = False  # not a pytest class
    name = "test"

    def __init__(
        self,
        model_name: str = "test-model",
        error_rate: float = 0.0,
        latency_s: float = 0.0,
        healthy: bool = True,
        seed: Optional[int] = 0,
        reply: Optional[str] = None,
    ):
        self.model_name = model_name
        self.reply = reply
        self._rng = random.Random(seed)
        self.configure(error_rate=error_rate, latency_s=latency_s, healthy=healthy)

    def configure(
        self,
        error_rate: Optional[float] = None,
        latency_s: Optional[float] = None,
        healthy: Optional[bool] = None,
    ) -> None:
        """Change the injected faults (what a test calls on a live replica)."""
        if error_rate is not None:
            self.error_rate = float(error_rate)
        if latency_s is not None:
            self.latency_s = float(latency_s)
        if healthy is not None:
            self.healthy = bool(healthy)

    def words(self, prompt: str, n: int) -> list[str]:
        """The deterministic answer to ``prompt``: ``n`` words drawn from its hash."""
        if self.reply is not None:
            return self.reply.split()[:n]
        seed = hashlib.sha256(prompt.encode()).digest()
        return [_WORDS[seed[i % len(seed)] % len(_WORDS)] for i in range(n)]

    async def _maybe_fail(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.error_rate and self._rng.random() < self.error_rate:
            raise InjectedFault("injected engine error")

    def _answer(self, prompt: str, sampling: Sampling) -> Generation:
        words = self.words(prompt, sampling.max_tokens)
        text, stopped = apply_stop(" ".join(words), sampling.stop)
        ended = stopped or (self.reply is not None and len(words) < sampling.max_tokens)
        return Generation(text, len(prompt.split()), len(words), "stop" if ended else "length")

    async def generate(self, prompt: str, sampling: Sampling) -> Generation:
        await self._maybe_fail()
        return self._answer(prompt, sampling)

    async def stream(self, prompt: str, sampling: Sampling) -> AsyncIterator[Chunk]:
        await self._maybe_fail()
        g = self._answer(prompt, sampling)
        for i, w in enumerate(g.text.split(" ")):
            yield Chunk(w if i == 0 else " " + w)
        yield Chunk(
            "", g.finish_reason, {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens}
        )

    async def check_health(self) -> None:
        if not self.healthy:
            raise InjectedFault("injected health-check failure")
