"""Who is acting, from where, in which request: read by ``audit_record``.

The HTTP middleware, the websocket consumer and the API authentication set it; management
commands leave it empty, and their entries are attributed to ``system``.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""  # the server's own (or its trusted proxy's), never a client's
    source_ip: str | None = None
    user_agent: str = ""
    user: Any = None  # accounts.User or None
    api_key: Any = None  # the API key model instance when a key authenticated the call
    client_request_id: str = ""  # a validated id the client sent; entries keep it in their details


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("audit_request_context", default=None)


def current_request_context() -> RequestContext | None:
    return _current.get()


@contextmanager
def request_context(context: RequestContext) -> Iterator[RequestContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def request_context_update(**changes: Any) -> None:
    """Amend the open context (e.g. once authentication has identified the user)."""
    context = _current.get()
    if context is not None:
        _current.set(replace(context, **changes))


def normalise_ip(value: str | None) -> str | None:
    """The canonical text form of an address, so it hashes the same after a DB round-trip."""
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return None


def address_in(value: str | None, networks) -> bool:
    """Whether the address ``value`` (text) lies in one of ``networks``: False for none, and for
    anything that is not an address."""
    if not value:
        return False
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return any(address in network for network in networks)
