"""Request context for the audit trail: request id, source address, user agent, user."""

from __future__ import annotations

import ipaddress
import re
import uuid

from django.conf import settings

from compliance.context import RequestContext, normalise_ip, request_context, request_context_update

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
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def request_id_from(meta: dict) -> str:
    supplied = meta.get("HTTP_X_REQUEST_ID", "")
    return supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Opens the audit context for the request; runs before authentication."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        context = RequestContext(
            request_id=request_id_from(request.META),
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
