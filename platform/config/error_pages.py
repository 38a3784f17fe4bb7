"""The error pages (400, 403, 404, 500): styled, in the reader's language, with navigation and,
for an ordinary refusal, its reason as the policy layer words it for the person refused.

Only reasons on these lists are shown: any other exception text (Django's own, or a view's) may
say more than a refused visitor should learn. A 404 never explains itself beyond "no such
thing, or not yours" (an administration route refused by network must look absent).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.utils.translation import gettext
from django.utils.translation import gettext_noop as noop

# The policy layer's messages are English constants (the audit trail and the logs read them as
# such); these literals are the same texts, for makemessages (a test checks they stay equal).
FORBIDDEN_REASONS = frozenset(
    {
        noop("This page is for another administrator role."),
        noop("This needs the department administrator role."),
        noop("Only the owner may do this."),
        noop("The department's policy does not allow this."),
        noop("This is not available to API keys."),
        noop("This is for API keys only."),
        noop("An administrator account holds no department membership and no department API key."),
        noop("The console needs a session signed in with two-factor authentication."),
        noop("Administrators cannot switch two-factor authentication off."),
    }
)
# A model refused to a department (inference.registry.services: VERSION_NOT_APPROVED,
# MODEL_NOT_ENABLED_REASON): the person learns which of the two it is.
MODEL_REFUSAL_REASONS = frozenset(
    {
        noop(
            "This model version is not approved: the security administrator approves a version before it can be used."
        ),
        noop("This model is not enabled for your department."),
    }
)
NOT_FOUND_REASONS = frozenset(
    {
        noop("No such department, or you are not a member of it."),
        noop("Not found."),
    }
)


def _reason(exception: BaseException | None, shown: frozenset[str]) -> str:
    # A refusal whose message names something (a model) carries a fixed wording to show instead.
    message = getattr(exception, "shown_reason", "") or (
        str(exception) if exception is not None and exception.args else ""
    )
    return gettext(message) if message in shown else ""


def _render(request: HttpRequest, template: str, status: int, context: dict) -> HttpResponse:
    body = loader.get_template(template).render(context, request)
    return HttpResponse(body, status=status)


def bad_request(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    # Rendered without the session: a malformed request may not have one worth reading.
    return _render(request, "400.html", 400, {"plain_page": True})


def permission_denied(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    return _render(request, "403.html", 403, {"reason": _reason(exception, FORBIDDEN_REASONS | MODEL_REFUSAL_REASONS)})


def page_not_found(request: HttpRequest, exception: BaseException | None = None) -> HttpResponse:
    # The same bytes for whoever asks and whatever the address: an object that does not exist
    # and one of another department or member must be indistinguishable (no menu, no token).
    return _render(request, "404.html", 404, {"plain_page": True, "reason": _reason(exception, NOT_FOUND_REASONS)})


def server_error(request: HttpRequest) -> HttpResponse:
    # Nothing that could fail again: no session, no database (the failure may be theirs).
    return _render(request, "500.html", 500, {"plain_page": True})
