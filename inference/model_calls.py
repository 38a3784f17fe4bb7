"""The one place a model call is audited: every channel, one schema (docs/audit.md, "Model calls").

The websocket chat, ``/v1/chat/completions``, a single extraction and a batch job each describe
their call with the same two facts objects and record it here, so an auditor filtering
``inference.call`` by ``channel`` sees every call, and a field means one thing everywhere:

- ``model_call_start_record(call)`` writes ``inference.start`` before the first token of a
  stream leaves. The caller writes it where a failure stops the call (AU-4: if the trail
  cannot be written, nothing is streamed).
- ``model_call_record(call, result)`` writes ``inference.call`` with the outcome. It takes no
  transaction of its own: the caller writes it inside the transaction of what the call produced
  (a stored turn, an extraction), so both exist or neither does.

**The prompt hash.** ``prompt_sha256`` is the SHA-256 of the UTF-8 text of the JSON array
``[[role, text, [image SHA-256, ...]], ...]``: one item per message as submitted to the model,
in order (roles ``system``/``user``/``assistant``, texts as sent, no whitespace between tokens,
non-ASCII unescaped), each with the SHA-256 of the *file* every image of that message came from
(an upload's ``Asset.sha256`` or the decoded bytes of a ``data:`` URL; all pages of a PDF count
once, as their file). Images are hashed by their file, not their pixels, so the same prompt with
the same file hashes alike through every channel. For a structured answer (``response_format``,
extraction) it covers the first attempt, instruction included; retries are counted in
``attempts``.

**The preview.** ``prompt_preview`` is the last user text, masked (``compliance.masking``), and
business text: ``audit_record`` seals it (``compliance.preview_crypto``) under the key of what the
call belongs to — the conversation (the chat's answer message, or the conversation its
``inference.start`` names), the extraction — or, for a call tied to no object (``/v1``, a refused
turn, the first turn of a conversation not created yet), its department's key of the month.
Deleting the conversation or the extraction shreds its previews; the hashes stay in clear.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compliance.events import EventType
from compliance.masking import masked_preview
from compliance.services import audit_record
from inference.engine.inputs import Message


class Channel(enum.StrEnum):
    WEBSOCKET = "websocket"  # the department chat, /ws/d/<slug>/chat/
    V1 = "v1"  # /v1/chat/completions
    EXTRACTION = "extraction"  # POST /api/v1/extractions
    BATCH = "batch"  # one file of a batch job


@dataclass(frozen=True)
class PromptMessage:
    """One message of a prompt as the hash sees it: role, text, and its images by file hash."""

    role: str
    text: str
    image_sha256: tuple[str, ...] = ()


def prompt_of(messages: Sequence[Message], image_sha256: Sequence[Sequence[str]]) -> tuple[PromptMessage, ...]:
    """The engine's messages with, for each one, the SHA-256 of the files its images came from."""
    if len(messages) != len(image_sha256):
        raise ValueError("one list of image hashes per message")
    return tuple(
        PromptMessage(message.role, message.text, tuple(hashes))
        for message, hashes in zip(messages, image_sha256, strict=True)
    )


def prompt_sha256(prompt: Iterable[PromptMessage]) -> str:
    """The one prompt hash (module docstring)."""
    canonical = json.dumps(
        [[message.role, message.text, list(message.image_sha256)] for message in prompt],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass(frozen=True)
class ModelCall:
    """What is known of a call when it is submitted, whatever the channel."""

    channel: Channel
    model: str  # the served model's name ("" when no model is loaded)
    model_sha256: str  # the loaded model's manifest SHA-256
    prompt: tuple[PromptMessage, ...]
    preview: str  # the text the masked preview is taken from: the last user message
    params: Mapping[str, Any] = field(default_factory=dict)  # generation parameters as asked
    stream: bool = False  # tokens are relayed as they come
    response_format: str = "text"  # text, json_object or json_schema
    asset_ids: tuple[str, ...] = ()  # department files the prompt refers to (inline images have none)
    # The document pages the model was shown ({"asset": id, "page": n}; numbers only, never text)
    pages: tuple[Mapping[str, Any], ...] = ()

    @property
    def image_sha256(self) -> list[str]:
        return [digest for message in self.prompt for digest in message.image_sha256]

    def details(self) -> dict[str, Any]:
        """The ``inference.start`` details; ``inference.call`` adds the result's."""
        return {
            "channel": str(self.channel),
            "model": self.model,
            "model_sha256": self.model_sha256,
            "prompt_sha256": prompt_sha256(self.prompt),
            "image_sha256": self.image_sha256,
            "prompt_preview": masked_preview(self.preview),
            "asset_ids": list(self.asset_ids),
            "pages": [{"asset": str(ref["asset"]), "page": int(ref["page"])} for ref in self.pages],
            "params": dict(self.params),
            "stream": self.stream,
            "response_format": self.response_format,
        }


@dataclass(frozen=True)
class ModelCallResult:
    """How a call ended. ``finish_reason``: the engine's ``stop`` or ``length``, ``cancelled``
    (``stopped_by`` says who: ``stop`` the person's button, ``disconnect`` the client went away,
    or the server's reason), ``error`` (``error`` holds the code), or "" when the model was never
    reached (a refusal: rate limit, busy engine, no model; ``attempts`` is then 0)."""

    outcome: str  # a compliance.events.Outcome: the entry's outcome
    latency_ms: float | None  # from the channel receiving the request to the end of the call
    finish_reason: str = ""
    prompt_tokens: int | None = None  # summed over attempts
    completion_tokens: int | None = None
    time_to_first_token_ms: float | None = None  # engine: submission to the first token (first attempt)
    attempts: int = 1  # times the model was asked (structured answers retry)
    stopped_by: str = ""
    error: str = ""  # the error's code ("busy", "timeout", "response_format_unsatisfied", …)

    def details(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "time_to_first_token_ms": self.time_to_first_token_ms,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "finish_reason": self.finish_reason,
            "stopped_by": self.stopped_by,
            "error": self.error,
        }


def error_code(error: BaseException) -> str:
    """The code an error is recorded by: its own ``code`` (engine, image and API errors have one)."""
    return str(getattr(error, "code", "") or type(error).__name__)


def model_call_start_record(
    call: ModelCall,
    *,
    department: Any,
    actor: Any = None,
    object_type: str = "inference.model",
    object_id: str = "",
    object_repr: str = "",
) -> None:
    """``inference.start``: written before the first token is sent; raises if it cannot be."""
    audit_record(
        event_type=EventType.INFERENCE_START,
        actor=actor,
        department=department,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr or call.model,
        details=call.details(),
    )


def model_call_record(
    call: ModelCall,
    result: ModelCallResult,
    *,
    department: Any,
    actor: Any = None,
    obj: Any = None,
    object_type: str = "inference.model",
    object_id: str = "",
    object_repr: str = "",
) -> None:
    """``inference.call``: the finished (or refused) call, in the caller's transaction."""
    audit_record(
        event_type=EventType.INFERENCE,
        outcome=result.outcome,
        actor=actor,
        department=department,
        obj=obj,
        object_type="" if obj is not None else object_type,
        object_id=object_id,
        object_repr=object_repr or ("" if obj is not None else call.model),
        details={**call.details(), **result.details()},
    )


__all__ = [
    "Channel",
    "ModelCall",
    "ModelCallResult",
    "PromptMessage",
    "error_code",
    "milliseconds",
    "model_call_record",
    "model_call_start_record",
    "prompt_of",
    "prompt_sha256",
]
