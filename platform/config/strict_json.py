"""Strict JSON for everything a client sends: REST bodies (``StrictJSONParser``, the project's
DRF JSON parser) and the chat's websocket frames (``inference.chat.protocol``).

Python's ``json`` accepts two things the rest of the platform cannot handle, and both used to end
in a 500 or a websocket closed with 1011: nesting deep enough to exhaust the interpreter's
recursion limit (``RecursionError``, not a ``ValueError``), and ``\\ud800``-style escapes that
decode to lone surrogates — strings that cannot be encoded as UTF-8, so the audit trail, the
database and the model's tokenizer fail on them later. Both are refused here, at the edge, with
a message the caller can act on. ``NaN`` and ``Infinity`` are refused too (not JSON), and so is
a number too large for a float (``1e999``, which Python reads as infinity, or an integer of 400
digits, which ``float()`` refuses with an OverflowError wherever it is read as a number).
"""

from __future__ import annotations

import codecs
import json
import math
import sys
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

# Deep enough for any request the platform understands (a JSON schema in response_format nests
# two levels per object), far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 64

JSON_TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted."
JSON_LONE_SURROGATE = "JSON text holds a \\u escape of a lone surrogate (U+D800 to U+DFFF), which is not a character."
JSON_CONSTANT = "JSON text holds {constant}, which is not a JSON number."
JSON_OUT_OF_RANGE = "JSON text holds the number {number}, which is out of range."
_FLOAT_DIGITS = 308  # an integer of at most this many digits is below a float's largest value
JSON_INVALID = "JSON parse error: {problem}"
BODY_TOO_LARGE = "The request body is larger than the limit of {limit_mb} MB."


class JsonRejected(ValueError):
    """Client JSON that is refused; ``str()`` is safe to send back. ``reason``: ``invalid`` (not
    JSON at all), ``too_deep``, ``lone_surrogate`` or ``constant``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _constant(name: str) -> Any:
    raise JsonRejected(JSON_CONSTANT.format(constant=name), "constant")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise JsonRejected(JSON_OUT_OF_RANGE.format(number=text[:40]), "constant")
    return number


def _integer(text: str) -> int:
    """An integer a float can still hold (``float()`` of a larger one raises OverflowError in
    whatever code reads it as a number: a temperature, a price)."""
    number = int(text)
    if len(text) > _FLOAT_DIGITS and abs(number) > sys.float_info.max:
        raise JsonRejected(JSON_OUT_OF_RANGE.format(number=text[:40]), "constant")
    return number


def _check_string(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRejected(JSON_LONE_SURROGATE, "lone_surrogate") from None


def json_check(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Refuse nesting deeper than ``max_depth`` and strings (keys too) holding lone surrogates.
    Iterative, so it cannot itself run out of stack."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonRejected(JSON_TOO_DEEP, "too_deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key)
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)
    return value


def json_strict_loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises only ``JsonRejected`` (a ``ValueError``) for anything refused."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite, parse_int=_integer)
    except RecursionError:
        raise JsonRejected(JSON_TOO_DEEP, "too_deep") from None
    except JsonRejected:
        raise
    except ValueError as problem:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise JsonRejected(JSON_INVALID.format(problem=problem), "invalid") from None
    return json_check(value, max_depth=max_depth)


def json_body_limit() -> int:
    return settings.API_MAX_BODY_MB * 1024 * 1024


class RequestBodyTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"


def declared_length(meta: dict) -> int | None:
    try:
        return int(meta.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


class StrictJSONParser(BaseParser):
    """The project's JSON parser: strict (see the module), with a body limit (``API_MAX_BODY_MB``):
    a declared Content-Length over it is refused (413) before a byte is read, and a body without
    one is never read past the limit.

    Not a subclass of DRF's ``JSONParser``: DRF hands a ``JSONParser`` the whole body through
    ``request.body``, which Django refuses (a 400 ``RequestDataTooBig``) past
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` — before this limit could answer 413, and for valid bodies
    between the two limits (an inline image of a few MiB). Any other parser reads the stream."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = json_body_limit()
        request = parser_context.get("request")
        length = declared_length(request.META) if request is not None else None
        too_large = RequestBodyTooLarge(BODY_TOO_LARGE.format(limit_mb=settings.API_MAX_BODY_MB))
        if length is not None and length > limit:
            raise too_large
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as problem:
            raise exceptions.ParseError(JSON_INVALID.format(problem=problem)) from None
        try:
            return json_strict_loads(text)
        except JsonRejected as problem:
            raise exceptions.ParseError(str(problem)) from None
