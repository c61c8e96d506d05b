"""The OpenAI wire format: request bodies (validated, so bad input is a 422 naming the field) and
the response and stream-chunk shapes."""

from __future__ import annotations

import time
import uuid
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .engines.base import Generation, Sampling

MAX_TOKENS = 4096


class _Common(BaseModel):
    # OpenAI clients send parameters Orion does not use (logprobs, penalties…): ignored, not refused
    model_config = ConfigDict(extra="ignore")
    model: str = Field(..., min_length=1, max_length=200)
    max_tokens: int = Field(16, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    stop: Optional[Union[str, list[str]]] = None
    stream: bool = False
    seed: Optional[int] = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    user: Optional[str] = Field(None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if isinstance(v, list) and (len(v) > 4 or not all(isinstance(s, str) and s for s in v)):
            raise ValueError("stop is at most 4 non-empty strings")
        return v

    def sampling(self) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Sampling(self.max_tokens, self.temperature, self.top_p, stop, self.seed)


class CompletionRequest(_Common):
    prompt: Union[str, list[str]] = Field(..., description="a string (or a list of one)")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("one prompt per request")
            v = v[0]
        if len(v) > 200_000:
            raise ValueError("prompt is longer than 200,000 characters")
        return v


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=200_000)


class ChatRequest(_Common):
    max_tokens: int = Field(128, ge=1, le=MAX_TOKENS)
    messages: list[Message] = Field(..., min_length=1, max_length=256)


def completion_body(kind: str, model: str, g: Generation) -> dict:
    """The OpenAI response for a finished generation (``kind``: ``completion`` or ``chat``)."""
    usage = {
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
    }
    if kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": g.text},
            "finish_reason": g.finish_reason,
        }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}],
        "usage": usage,
    }


def chunk_body(kind: str, model: str, rid: str, text: str, finish: Optional[str]) -> dict:
    """One streamed chunk in OpenAI's shape."""
    if kind == "chat":
        delta = {"content": text} if text else {}
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }
