"""Engines behind one interface; ``make_engine`` imports the heavy ones (llama.cpp, vLLM) lazily."""

from __future__ import annotations

from typing import Any

from .base import Engine, EngineUnavailable, Generation, Sampling


def make_engine(kind: str, args: dict[str, Any]) -> Engine:
    """An engine of ``kind`` (``test``, ``cpu`` or ``vllm``) built from ``args``."""
    if kind == "test":
        from .test_engine import TestEngine

        return TestEngine(**args)
    if kind == "cpu":
        from .cpu import CpuEngine

        return CpuEngine(**args)
    if kind == "vllm":
        from .vllm_engine import VllmEngine

        return VllmEngine(**args)
    raise ValueError(f"unknown engine {kind!r} (test, cpu or vllm)")


__all__ = ["Engine", "EngineUnavailable", "Generation", "Sampling", "make_engine"]
