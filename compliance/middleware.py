"""Request context for the audit trail: request id, source address, user agent, user."""

from __future__ import annotations

import re
import uuid

from django.conf import settings

from compliance.context import RequestContext, address_in, normalise_ip, request_context, request_context_update

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_address(meta: dict) -> str | None:
    """REMOTE_ADDR, or the right-most untrusted X-Forwarded-For hop when a trusted proxy sent it."""
    remote = normalise_ip(meta.get("REMOTE_ADDR"))
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if not remote or not forwarded or not _is_trusted_proxy(remote):
        return remote
    hops = [normalise_ip(hop) for hop in forwarded.split(",")]
    for hop in reversed(hops):
        if hop is None:
            return remote  # a malformed header is not believed
        if not _is_trusted_proxy(hop):
            return hop
    return hops[0] or remote


def _is_trusted_proxy(address: str) -> bool:
    return address_in(address, settings.TRUSTED_PROXIES)


def _valid_request_id(value: str) -> str:
    return value if _REQUEST_ID.match(value) else ""


def request_ids_from(meta: dict) -> tuple[str, str]:
    """(the server's own request id, the id the client supplied or "").

    The server's own id is the trusted proxy's (nginx's ``$request_id``, which ties its log to
    ours) or a new one; never a client's. What a client sent — ``X-Request-ID`` straight to the
    app, or through the proxy, which passes it on as ``X-Client-Request-ID`` — is validated and
    kept apart, so that an entry can name it without the client choosing the entry's id.
    """
    remote = normalise_ip(meta.get("REMOTE_ADDR"))
    if remote and _is_trusted_proxy(remote):
        own = _valid_request_id(meta.get("HTTP_X_REQUEST_ID", ""))
        supplied = _valid_request_id(meta.get("HTTP_X_CLIENT_REQUEST_ID", ""))
    else:
        own, supplied = "", _valid_request_id(meta.get("HTTP_X_REQUEST_ID", ""))
    return own or uuid.uuid4().hex, supplied


class RequestContextMiddleware:
    """Opens the audit context for the request; runs before authentication."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id, client_request_id = request_ids_from(request.META)
        context = RequestContext(
            request_id=request_id,
            client_request_id=client_request_id,
            source_ip=client_address(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        )
        request.request_id = context.request_id
        request.source_ip = context.source_ip
        with request_context(context):
            response = self.get_response(request)
        response["X-Request-ID"] = context.request_id
        return response


class RequestUserContextMiddleware:
    """Adds the authenticated user to the audit context; runs after authentication."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            request_context_update(user=user)
        return self.get_response(request)
