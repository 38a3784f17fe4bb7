"""The idle warning's two endpoints (static/js/session.js, IA-2).

``session_state`` is a background poll: asking how long the session has left never extends it.
``session_keep_alive`` is the person's explicit "keep me signed in" answer to the warning, and so
counts as activity.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.activity import activity_record, background, idle_remaining_seconds, idle_warning_seconds
from accounts.login_policy import current_policy
from accounts.permissions import Action, public, requires


def _state(request: HttpRequest) -> dict:
    if not request.user.is_authenticated:  # never signed in, or ended by this very request
        return {"signed_in": False}
    idle_seconds = current_policy().session_idle_seconds
    remaining = idle_remaining_seconds(request.session, idle_seconds=idle_seconds)
    return {
        "signed_in": True,
        "idle_seconds": idle_seconds,
        "idle_remaining_seconds": max(0.0, round(remaining, 1)),
        "warn_seconds": idle_warning_seconds(idle_seconds),
    }


# Public: a signed-out page learns that its session is over (no login redirect, no refusal).
@public(Action.SIGN_IN)
@background
@require_GET
@never_cache
def session_state(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_state(request))


@requires(Action.OWN_ACCOUNT)
@require_POST
@never_cache
def session_keep_alive(request: HttpRequest) -> JsonResponse:
    activity_record(request.session, idle_seconds=current_policy().session_idle_seconds, force=True)
    return JsonResponse(_state(request))
