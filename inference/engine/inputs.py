"""What a caller hands the engine: messages (text + PIL images) and validated parameters."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from inference.engine.errors import (
    IMAGE_IN_NON_USER,
    IMAGE_INVALID,
    MAX_NEW_TOKENS_INVALID,
    MAX_NEW_TOKENS_OVER_CAP,
    MESSAGE_EMPTY,
    MESSAGES_EMPTY,
    MESSAGES_LAST_NOT_USER,
    MIN_NEW_TOKENS_INVALID,
    ROLE_INVALID,
    SEED_INVALID,
    STOP_INVALID,
    SYSTEM_NOT_FIRST,
    TEMPERATURE_INVALID,
    TOO_MANY_IMAGES,
    TOP_P_INVALID,
    InvalidRequest,
)

ROLES = ("system", "user", "assistant")
MAX_STOP_STRINGS = 4
MAX_STOP_LENGTH = 64
MAX_IMAGES = 16


@dataclass(frozen=True)
class Message:
    """One turn. ``images`` are decoded PIL images (assets decrypt them; the API decodes data: URLs)."""

    role: str
    text: str = ""
    images: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Not exposed to end users: benchmarks set it equal to max_new_tokens so counts compare.
    min_new_tokens: int = 0

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one ``generate`` call (same decoding strategy).

        A seeded request runs alone: the seed fixes the process-wide RNG for that call.
        """
        if self.seed is not None:
            return ("seeded", id(self))
        if not self.do_sample:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_params(
    *,
    max_new_tokens: Any = None,
    temperature: Any = 0.0,
    top_p: Any = 1.0,
    stop: Any = None,
    seed: Any = None,
    min_new_tokens: Any = 0,
    cap: int,
    default_max_new_tokens: int = 256,
) -> GenerationParams:
    """Check caller-supplied values and return GenerationParams, or raise InvalidRequest."""
    if max_new_tokens is None:
        max_new_tokens = min(default_max_new_tokens, cap)
    if not _is_whole(max_new_tokens) or max_new_tokens < 1:
        raise InvalidRequest(MAX_NEW_TOKENS_INVALID)
    if max_new_tokens > cap:
        raise InvalidRequest(MAX_NEW_TOKENS_OVER_CAP.format(value=max_new_tokens, cap=cap))
    if temperature is None:
        temperature = 0.0
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise InvalidRequest(TEMPERATURE_INVALID)
    if top_p is None:
        top_p = 1.0
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise InvalidRequest(TOP_P_INVALID)
    if stop is None:
        stop = ()
    if isinstance(stop, str):
        stop = (stop,)
    if (
        not isinstance(stop, list | tuple)
        or len(stop) > MAX_STOP_STRINGS
        or any(not isinstance(s, str) or not s or len(s) > MAX_STOP_LENGTH for s in stop)
    ):
        raise InvalidRequest(STOP_INVALID.format(limit=MAX_STOP_STRINGS, length=MAX_STOP_LENGTH))
    if seed is not None and (not _is_whole(seed) or not 0 <= seed < 2**63):
        raise InvalidRequest(SEED_INVALID)
    if not _is_whole(min_new_tokens) or not 0 <= min_new_tokens <= max_new_tokens:
        raise InvalidRequest(MIN_NEW_TOKENS_INVALID)
    return GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=float(temperature),
        top_p=float(top_p),
        stop=tuple(stop),
        seed=seed,
        min_new_tokens=min_new_tokens,
    )


def validate_messages(messages: list[Message] | tuple[Message, ...]) -> tuple[Message, ...]:
    from PIL import Image

    messages = tuple(messages)
    if not messages:
        raise InvalidRequest(MESSAGES_EMPTY)
    images = 0
    for index, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidRequest(ROLE_INVALID.format(role=message.role))
        if message.role == "system" and index != 0:
            raise InvalidRequest(SYSTEM_NOT_FIRST)
        if not isinstance(message.text, str) or (not message.text and not message.images):
            raise InvalidRequest(MESSAGE_EMPTY)
        if message.images and message.role != "user":
            raise InvalidRequest(IMAGE_IN_NON_USER)
        if any(not isinstance(image, Image.Image) for image in message.images):
            raise InvalidRequest(IMAGE_INVALID)
        images += len(message.images)
    if images > MAX_IMAGES:
        raise InvalidRequest(TOO_MANY_IMAGES.format(limit=MAX_IMAGES))
    if messages[-1].role != "user":
        raise InvalidRequest(MESSAGES_LAST_NOT_USER)
    return messages


@dataclass
class GenerationRequest:
    """A request as the scheduler sees it. ``department`` is the fairness key (a slug or id)."""

    messages: tuple[Message, ...]
    params: GenerationParams
    department: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
