"""A request body that declares more bytes than its endpoint accepts is never read.

Django's ASGI handler reads the whole body (spooling it to a temp file) before any view or upload
handler runs, so the limits further in — the upload handler's Content-Length check, the JSON
parser's — would only refuse it after it had been received. ``UnreadOversizedBody`` wraps the
HTTP application: when Content-Length exceeds the limit for the body's type, Django gets an empty
body and the same headers, so the request still goes the usual way (middleware, permissions,
audit) and the endpoint answers its own refusal (413 from the upload path or the JSON parser)
from the declared length. The server then closes the connection without reading the body.

Limits by type: multipart uploads ``MAX_UPLOAD_MB`` (+ room for the parts' headers), JSON
``API_MAX_BODY_MB``, anything else Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``. A body that declares
no length (``Transfer-Encoding: chunked``) is read up to that limit and no further.
"""

from __future__ import annotations

import asyncio

from django.conf import settings


def body_limit(content_type: str) -> int | None:
    """The most bytes a body of this type may declare (None: no limit here)."""
    from assets.services import max_upload_bytes
    from assets.upload_handlers import MULTIPART_OVERHEAD

    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return max_upload_bytes() + MULTIPART_OVERHEAD
    if kind == "application/json" or kind.endswith("+json"):
        return settings.API_MAX_BODY_MB * 1024 * 1024
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _has_header(scope: dict, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope.get("headers", []))


def _declared(scope: dict) -> tuple[int | None, str]:
    length, content_type = None, ""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None, ""
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return length, content_type


def _capped(receive, limit: int):
    """``receive`` for a body that declares no length (chunked): bytes are passed on up to
    ``limit`` (and one more, so that a parser reading to its limit sees it was passed), then the
    body ends there and the rest is never read. Without this Django would spool any amount to disk
    before the first view ran."""
    received = 0
    cut = False

    async def capped():
        nonlocal received, cut
        if cut:
            await asyncio.Event().wait()  # only a disconnect could come; the rest stays unread
        message = await receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        if received + len(body) > limit:
            cut = True
            body = body[: limit + 1 - received]
            received = limit + 1
            return {"type": "http.request", "body": body, "more_body": False}
        received += len(body)
        return message

    return capped


class UnreadOversizedBody:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length, content_type = _declared(scope)
        if length is None:
            if not _has_header(scope, b"transfer-encoding"):
                return await self.app(scope, receive, send)  # no body at all
            limit = body_limit(content_type)
            return await self.app(scope, receive if limit is None else _capped(receive, limit), send)
        limit = body_limit(content_type)
        if limit is None or length <= limit:
            return await self.app(scope, receive, send)
        delivered = False

        async def unread():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # Later calls only watch for a disconnect: wait without reading the client's bytes
            # (Django cancels this once the response is sent).
            await asyncio.Event().wait()

        return await self.app(scope, unread, send)
