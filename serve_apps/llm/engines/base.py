"""The engine interface every serving replica drives."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Optional


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (its package or its hardware is missing)."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: Optional[int] = None


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" or "length"


@dataclass
class Chunk:
    """One streamed piece; the last one carries the finish reason and the token counts."""

    text: str
    finish_reason: Optional[str] = None
    usage: dict = field(default_factory=dict)


class Engine(abc.ABC):
    """A text generator. ``stream`` yields text pieces as they are made; ``check_health`` raises
    when the engine can no longer generate (Serve then replaces the replica)."""

    name: str = "engine"
    model_name: str = "model"

    @abc.abstractmethod
    async def generate(self, prompt: str, sampling: Sampling) -> Generation: ...

    @abc.abstractmethod
    def stream(self, prompt: str, sampling: Sampling) -> AsyncIterator[Chunk]: ...

    @abc.abstractmethod
    async def check_health(self) -> None: ...

    def chat_prompt(self, messages: list[dict]) -> str:
        """Messages as one prompt (ChatML, which SmolLM2 and many small models were tuned on)."""
        parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        return "".join(parts) + "<|im_start|>assistant\n"

    async def close(self) -> None:  # noqa: B027  (optional: most engines hold nothing)
        """Release what the engine holds."""


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` cut at the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class PromptTooLong(ValueError):
    """The prompt and the answer asked for do not fit the model's context."""
