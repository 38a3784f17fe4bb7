"""The chat websocket's JSON protocol, version 1: frame shapes, limits and validation.

Every frame is a JSON object with ``"v": 1`` and a ``"type"``. A frame that does not parse
(strictly: ``config.strict_json``) or does not validate answers an ``error`` frame
(``fatal: false``); the socket stays open.

Client → server::

    {"v": 1, "type": "turn.start", "ref": "c1", "conversation": 12 | null, "text": "...",
     "assets": ["<uuid>", ...], "params": {"temperature": 0.7, "max_new_tokens": 256},
     "template": "<task template slug>" (optional: its JSON schema goes to the model with the text),
     "model": "<model name>" (optional: one of the loaded models the department may use; without
     it, the department's default)}
    {"v": 1, "type": "turn.stop"}
    {"v": 1, "type": "ping"}

Server → client: ``hello`` (model, limits), ``turn.accepted`` (conversation, ref), ``queued``
(position), ``token`` (text), ``done`` (usage, finish_reason, status, message ids, the model
version ``model_sha256`` that answered), ``error``
(code, message, fatal, retry_after?), ``pong``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from config.strict_json import JsonRejected, json_strict_loads

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 32 * 1024
MAX_TEXT_CHARS = 8000
MAX_ASSETS_PER_TURN = 8
MAX_REF_CHARS = 64
MAX_TEMPERATURE = 2.0

# Error codes of error frames (the browser maps them to translated texts; ``message`` is English).
CODE_BAD_FRAME = "bad_frame"
CODE_UNSUPPORTED_VERSION = "unsupported_version"
CODE_TOO_LARGE = "too_large"
CODE_TURN_IN_PROGRESS = "turn_in_progress"
CODE_NO_TURN = "no_turn"
CODE_RATE_LIMITED = "rate_limited"
CODE_NOT_FOUND = "not_found"
CODE_INVALID_REQUEST = "invalid_request"
CODE_BUSY = "busy"
CODE_MODEL_UNAVAILABLE = "model_unavailable"
CODE_INTERNAL = "internal_error"
TEMPLATE_NOT_FOUND = "That task template is not available in this department."
CODE_UNREADABLE_FILE = "unreadable_file"  # a file of the turn does not decode (marked unusable)
CODE_TOO_MANY_PIXELS = "too_many_pixels"  # the turn's images exceed the request's pixel budget
CODE_MODEL_NOT_ENABLED = "model_not_enabled"  # the department's administrator did not enable this model
CODE_TOO_MANY_IMAGES = "too_many_images"  # more images than the model takes in one request
CODE_MODEL_NOT_FOUND = "model_not_found"  # the turn names a model this server does not have
CODE_MODEL_NOT_APPROVED = "model_not_approved"  # the turn names a version the security administrator did not approve
MAX_MODEL_CHARS = 100  # a model version's name (inference.registry.models.ModelVersion.name)

FRAME_NOT_JSON = "the frame is not valid JSON"
FRAME_NOT_OBJECT = "a frame must be a JSON object"
FRAME_TOO_LARGE = f"frames are limited to {MAX_FRAME_BYTES} bytes"
FRAME_BINARY = "binary frames are not accepted; send JSON text"
VERSION_UNSUPPORTED = f"unsupported protocol version; this server speaks v{PROTOCOL_VERSION}"
TYPE_UNKNOWN = "unknown frame type {type!r}"
FIELD_INVALID = "field {field!r}: {problem}"
TEXT_REQUIRED = "a turn needs text or at least one image"
TURN_IN_PROGRESS = "a turn is already running on this connection; stop it or wait for it to finish"
NO_TURN_RUNNING = "no turn is running"
RATE_LIMITED = "too many turns: at most {limit} per minute; retry in {retry_after} s"
CONVERSATION_NOT_FOUND = "no such conversation"
FILE_NOT_FOUND = "no such file in this department"
INTERNAL_ERROR = "the turn could not be processed"

CLIENT_TYPES = ("turn.start", "turn.stop", "ping")


class ProtocolError(ValueError):
    """A refusal to answer with an error frame; ``fields`` go into the frame (e.g. retry_after)."""

    def __init__(self, message: str, code: str = CODE_BAD_FRAME, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.fields = fields


@dataclass(frozen=True)
class TurnStart:
    text: str
    conversation_id: int | None = None
    asset_ids: tuple[str, ...] = ()
    temperature: float = 0.0
    max_new_tokens: int | None = None
    ref: str = ""
    template: str = ""  # a task template's slug: its schema is sent to the model with the text
    model: str = ""  # the model's name; "" = the department's default


@dataclass(frozen=True)
class ClientFrame:
    type: str
    turn: TurnStart | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _invalid(name: str, problem: str) -> ProtocolError:
    return ProtocolError(FIELD_INVALID.format(field=name, problem=problem))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TEMPLATE_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")


def _turn_start(frame: dict[str, Any], *, max_new_tokens_cap: int) -> TurnStart:
    text = frame.get("text", "")
    if not isinstance(text, str):
        raise _invalid("text", "must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise _invalid("text", f"at most {MAX_TEXT_CHARS} characters")
    conversation = frame.get("conversation")
    if conversation is not None and (not _whole(conversation) or conversation < 1):
        raise _invalid("conversation", "must be a conversation id or null")
    assets = frame.get("assets", [])
    if not isinstance(assets, list) or len(assets) > MAX_ASSETS_PER_TURN:
        raise _invalid("assets", f"must be a list of at most {MAX_ASSETS_PER_TURN} file ids")
    asset_ids = []
    for item in assets:
        try:
            asset_ids.append(str(uuid.UUID(item)))
        except (TypeError, ValueError, AttributeError):
            raise _invalid("assets", "every item must be a file id (UUID)") from None
    if not text.strip() and not asset_ids:
        raise ProtocolError(TEXT_REQUIRED)
    ref = frame.get("ref", "")
    if not isinstance(ref, str) or len(ref) > MAX_REF_CHARS:
        raise _invalid("ref", f"must be a string of at most {MAX_REF_CHARS} characters")
    params = frame.get("params", {})
    if not isinstance(params, dict):
        raise _invalid("params", "must be an object")
    unknown = set(params) - {"temperature", "max_new_tokens"}
    if unknown:
        raise _invalid("params", f"unknown parameter {sorted(unknown)[0]!r}")
    temperature = params.get("temperature", 0.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        raise _invalid("params.temperature", f"must be a number from 0 to {MAX_TEMPERATURE:g}")
    max_new_tokens = params.get("max_new_tokens")
    if max_new_tokens is not None and (not _whole(max_new_tokens) or not 1 <= max_new_tokens <= max_new_tokens_cap):
        raise _invalid("params.max_new_tokens", f"must be a whole number from 1 to {max_new_tokens_cap}")
    template = frame.get("template", "")
    if not isinstance(template, str) or not _TEMPLATE_SLUG.fullmatch(template or "x"):
        raise _invalid("template", "must be a task template's identifier")
    model = frame.get("model", "")
    if model is None:
        model = ""
    if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS or not model.isprintable():
        raise _invalid("model", f"must be a model's name of at most {MAX_MODEL_CHARS} characters")
    return TurnStart(
        text=text,
        conversation_id=conversation,
        asset_ids=tuple(dict.fromkeys(asset_ids)),
        temperature=float(temperature),
        max_new_tokens=max_new_tokens,
        ref=ref,
        template=template,
        model=model,
    )


def parse_client_frame(raw: str | None, *, max_new_tokens_cap: int) -> ClientFrame:
    """Validate one received text frame; raise ProtocolError with a message safe to send back."""
    if raw is None:
        raise ProtocolError(FRAME_BINARY)
    if len(raw) > MAX_FRAME_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError(FRAME_TOO_LARGE, CODE_TOO_LARGE)
    try:
        # Strict: nesting that would exhaust the stack, and \ud800-style escapes that decode to
        # lone surrogates (unencodable further on), answer an error frame like any bad frame.
        frame = json_strict_loads(raw)
    except JsonRejected as problem:
        raise ProtocolError(FRAME_NOT_JSON if problem.reason == "invalid" else str(problem)) from None
    if not isinstance(frame, dict):
        raise ProtocolError(FRAME_NOT_OBJECT)
    if frame.get("v") != PROTOCOL_VERSION or isinstance(frame.get("v"), bool):
        raise ProtocolError(VERSION_UNSUPPORTED, CODE_UNSUPPORTED_VERSION)
    kind = frame.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(TYPE_UNKNOWN.format(type=str(kind)[:40]))
    if kind == "turn.start":
        return ClientFrame(type=kind, turn=_turn_start(frame, max_new_tokens_cap=max_new_tokens_cap))
    return ClientFrame(type=kind)


def server_frame(kind: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: str, message: str, *, fatal: bool = False, **fields: Any) -> str:
    return server_frame("error", code=code, message=message, fatal=fatal, **fields)
