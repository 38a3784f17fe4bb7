"""Sign-in (password → second factor or its enrolment → password renewal), 2FA settings, API login."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import login as pipeline
from accounts.forms import LoginForm, PasswordChangeForm, PasswordRenewForm, TokenForm
from accounts.login import LOGIN_REFUSED, PENDING_LOGIN_EXPIRED, LoginRefused, Stage, StepRefused
from accounts.models import AccountSource
from accounts.permissions import Action, RefusedForbidden, is_administrator, public, requires
from accounts.two_factor import (
    recovery_codes_renew,
    totp_device_pending,
    totp_enrol_confirm,
    totp_qr_svg,
    two_factor_enrolled,
    two_factor_remove,
)

RECOVERY_CODES_SESSION_KEY = "accounts.recovery_codes"
CODE_INVALID = gettext_lazy("That code is not valid. Try again.")
CURRENT_PASSWORD_INVALID = gettext_lazy("Your current password is not valid.")
CURRENT_PASSWORD_OR_CODE_INVALID = gettext_lazy("Your current password or the code is not valid.")
DIRECTORY_PASSWORD_ELSEWHERE = gettext_lazy("Directory accounts change their password in the directory.")
STAGE_URL_NAMES = {Stage.VERIFY: "login-verify", Stage.ENROL: "login-enrol", Stage.PASSWORD: "login-password"}


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _landing(request: HttpRequest, pending_next: str) -> str:
    """The page to open once signed in: the one asked for, else the person's landing page (a
    sign-in that began at the picker, e.g. from "/", asked for no page in particular)."""
    from departments.views import landing_url

    target = _safe_next(request, pending_next)
    if target == reverse(settings.LOGIN_REDIRECT_URL):
        return landing_url(request)
    return target


def _after_stage(request: HttpRequest, stage: Stage, pending_next: str) -> HttpResponse:
    if stage == Stage.DONE:
        if request.session.get(RECOVERY_CODES_SESSION_KEY):
            return redirect("recovery-codes")
        return redirect(_landing(request, pending_next))
    return redirect(STAGE_URL_NAMES[stage])


@public(Action.SIGN_IN)
@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.user.is_authenticated:
        return redirect(_landing(request, next_url))
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = pipeline.credentials_check(
                request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except LoginRefused:
            form.add_error(None, LOGIN_REFUSED)
        else:
            stage = pipeline.login_begin(request, user, next_url=next_url)
            return _after_stage(request, stage, next_url)
    return render(
        request,
        "registration/login.html",
        {
            "form": form,
            "next": next_url,
            "session_expired": request.GET.get("expired") == "1",
            # Switching the language keeps where the person was going (after a failed attempt
            # too, when the page's own address no longer carries ?next=).
            "language_next": _login_url_with_next(next_url),
        },
    )


def _login_url_with_next(next_url: str) -> str:
    login_url = reverse("login")
    return f"{login_url}?{urlencode({'next': next_url})}" if next_url else login_url


def _pending_sign_in_step(*sensitive_parameters: str) -> Callable:
    """A step after the password (public, CSRF-protected, never cached, ``sensitive_parameters``
    kept out of error reports): the view gets the pending sign-in's user and state, and an expired
    one starts again at the login page."""

    def decorator(view: Callable) -> Callable:
        @public(Action.SIGN_IN)
        @sensitive_post_parameters(*sensitive_parameters)
        @csrf_protect
        @never_cache
        @wraps(view)
        def step(request: HttpRequest) -> HttpResponse:
            user, pending = pipeline.pending_login(request)
            if user is None:
                messages.error(request, PENDING_LOGIN_EXPIRED)
                return redirect("login")
            return view(request, user, pending)

        return step

    return decorator


@_pending_sign_in_step("token")
def login_verify(request: HttpRequest, user, pending: dict) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = pipeline.second_factor_check(request, user, token=form.cleaned_data["token"])
        except StepRefused as refusal:
            if refusal.locked:
                messages.error(request, LOGIN_REFUSED)
                return redirect("login")
            form.add_error("token", CODE_INVALID)
        else:
            stage = pipeline.second_factor_accept(request, user, pending, device)
            return _after_stage(request, stage, pending["next"])
    return render(request, "accounts/login_verify.html", {"form": form})


@_pending_sign_in_step("token")
def login_enrol(request: HttpRequest, user, pending: dict) -> HttpResponse:
    """An administrator's first sign-in: set up the authenticator before anything else."""
    device = totp_device_pending(user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if pipeline.lock_refusal(request, user, step="enrolment"):
            pipeline.pending_cancel(request)
            messages.error(request, LOGIN_REFUSED)
            return redirect("login")
        codes = totp_enrol_confirm(user=user, device=device, token=form.cleaned_data["token"])
        if codes is not None:
            request.session[RECOVERY_CODES_SESSION_KEY] = codes
            stage = pipeline.second_factor_accept(request, user, pending, device)
            return _after_stage(request, stage, pending["next"])
        if pipeline.second_factor_reject(request, user):
            messages.error(request, LOGIN_REFUSED)
            return redirect("login")
        form.add_error("token", CODE_INVALID)
    return render(
        request,
        "accounts/two_factor_enrol.html",
        {"form": form, "qr_svg": totp_qr_svg(device), "secret": _b32_secret(device), "mandatory": True},
    )


@_pending_sign_in_step("new_password1", "new_password2")
def login_password(request: HttpRequest, user, pending: dict) -> HttpResponse:
    """A password that expired or that an administrator set must be replaced before signing in."""
    form = PasswordRenewForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        stage = pipeline.password_changed(request, user, pending)
        return _after_stage(request, stage, pending["next"])
    return render(request, "accounts/password_renew.html", {"form": form})


def _b32_secret(device) -> str:
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@requires(Action.OWN_ACCOUNT)
@never_cache
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """Shown once, straight after enrolment or regeneration."""
    codes = request.session.pop(RECOVERY_CODES_SESSION_KEY, None)
    if not codes:
        return redirect("two-factor")
    return render(request, "accounts/recovery_codes.html", {"codes": codes})


@requires(Action.OWN_ACCOUNT)
@csrf_protect
@never_cache
def two_factor_settings(request: HttpRequest) -> HttpResponse:
    """Members enrol here if they wish; anyone enrolled can renew recovery codes."""
    user = request.user
    enrolled = two_factor_enrolled(user)
    form = TokenForm(request.POST or None)
    action = request.POST.get("action")
    if request.method == "POST":
        if action == "enrol" and not enrolled and form.is_valid():
            codes = totp_enrol_confirm(user=user, device=totp_device_pending(user), token=form.cleaned_data["token"])
            if codes is not None:
                request.session[RECOVERY_CODES_SESSION_KEY] = codes
                return redirect("recovery-codes")
            form.add_error("token", CODE_INVALID)
        elif action in ("regenerate", "remove") and enrolled and form.is_valid():
            # A step-up: a signed-in session alone (left open, or stolen) must not replace the
            # recovery codes or switch the second factor off. A current code is asked for, and a
            # wrong one counts toward the lockout as at sign-in (no guessing codes from a session).
            try:
                pipeline.second_factor_check(
                    request, user, token=form.cleaned_data["token"], step="two-factor settings"
                )
            except StepRefused as refusal:
                if refusal.locked:
                    return _locked_out(request, user)
                form.add_error("token", CODE_INVALID)
            else:
                if action == "regenerate":
                    request.session[RECOVERY_CODES_SESSION_KEY] = recovery_codes_renew(user=user)
                    return redirect("recovery-codes")
                try:
                    two_factor_remove(user=user, acting_user=user)
                except RefusedForbidden as refusal:
                    messages.error(request, _(str(refusal)))
                return redirect("two-factor")
    context = {"enrolled": enrolled, "form": form, "mandatory": is_administrator(user)}
    if not enrolled:
        device = totp_device_pending(user)
        context.update(qr_svg=totp_qr_svg(device), secret=_b32_secret(device))
    return render(request, "accounts/two_factor.html", context)


def _locked_out(request: HttpRequest, user) -> HttpResponse:
    """A step-up found the account or address locked (or locked it): every session of the user
    ends, this one included, and the sign-in page says no more than at any refusal."""
    from accounts.sessions import sessions_end_for_user

    sessions_end_for_user(user=user, reason="lockout")
    messages.error(request, LOGIN_REFUSED)
    return redirect("login")


@requires(Action.OWN_ACCOUNT)
@sensitive_post_parameters("old_password", "token", "new_password1", "new_password2")
@csrf_protect
@never_cache
def password_change(request: HttpRequest) -> HttpResponse:
    """A step-up: the current password (and a current code for administrators), then the new one.

    A session left open, or stolen, must not be enough to take the account over. Wrong answers are
    audited and count toward the lock as at sign-in.
    """
    user = request.user
    if user.source != AccountSource.LOCAL:
        messages.error(request, DIRECTORY_PASSWORD_ELSEWHERE)
        return redirect(settings.LOGIN_REDIRECT_URL)
    code_required = is_administrator(user)
    form = PasswordChangeForm(user, request.POST or None, code_required=code_required)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline.step_up_check(
                request,
                user,
                password=form.cleaned_data["old_password"],
                token=form.cleaned_data["token"] if code_required else None,
                step="password change",
            )
        except StepRefused as refusal:
            if refusal.locked:
                return _locked_out(request, user)
            form.add_error(None, CURRENT_PASSWORD_OR_CODE_INVALID if code_required else CURRENT_PASSWORD_INVALID)
        else:
            form.save()
            # Keep this session, end the others (a stolen session must not outlive the new password).
            from django.contrib.auth import update_session_auth_hash

            from accounts.sessions import sessions_end_for_user

            update_session_auth_hash(request, user)
            sessions_end_for_user(user=user, reason="password_change", keep_session_key=request.session.session_key)
            messages.success(request, _("Your password was changed."))
            return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/password_renew.html", {"form": form, "self_service": True})


@requires(Action.OWN_ACCOUNT)
@never_cache
def profile(request: HttpRequest) -> HttpResponse:
    """The signed-in person's own account: who the platform knows them as, and their access."""
    from departments.selectors import membership_list_for_user

    user = request.user
    return render(
        request,
        "accounts/profile.html",
        {
            "profile_user": user,
            "memberships": membership_list_for_user(user=user),
            "two_factor_enrolled": two_factor_enrolled(user),
        },
    )


API_LOGIN_SECOND_FACTOR_NEEDED = "second_factor_required"
API_LOGIN_ENROLMENT_NEEDED = "enrolment_required"
API_LOGIN_PASSWORD_EXPIRED = "password_expired"  # noqa: S105  (a code, not a password)
API_LOGIN_MAX_BODY_BYTES = 16 * 1024  # a user name, a password and a code


@public(Action.SIGN_IN)
@require_POST
@csrf_protect
@never_cache
def api_login(request: HttpRequest) -> JsonResponse:
    """JSON sign-in for scripts and single-page clients: the same pipeline, one request.

    Body: {"username", "password", "otp"?}. Answers 200 with the session cookie, or 401 with
    {"error": ...}: "invalid" for every credential failure (locked accounts included), or a
    stage the browser sign-in must complete first. A malformed body answers 400 (audited).
    """
    fields = _api_login_fields(request)
    if fields is None:
        pipeline.refusal_audit("", "malformed request")
        return JsonResponse({"error": "invalid"}, status=400)
    username, password, otp = fields
    try:
        user = pipeline.credentials_check(request, username=username, password=password)
    except LoginRefused:
        return JsonResponse({"error": "invalid", "detail": str(LOGIN_REFUSED)}, status=401)
    pending = {"user_id": user.pk, "backend": user.backend, "otp_device": None, "next": ""}
    stage = pipeline.next_stage(user, pending)
    if stage == Stage.VERIFY:
        if not otp:
            return JsonResponse({"error": API_LOGIN_SECOND_FACTOR_NEEDED}, status=401)
        try:
            device = pipeline.second_factor_check(request, user, token=otp)
        except StepRefused as refusal:
            if refusal.locked:
                return JsonResponse({"error": "invalid", "detail": str(LOGIN_REFUSED)}, status=401)
            return JsonResponse({"error": API_LOGIN_SECOND_FACTOR_NEEDED}, status=401)
        pending["otp_device"] = device.persistent_id
        stage = pipeline.next_stage(user, pending)
    if stage == Stage.ENROL:
        return JsonResponse({"error": API_LOGIN_ENROLMENT_NEEDED}, status=401)
    if stage == Stage.PASSWORD:
        return JsonResponse({"error": API_LOGIN_PASSWORD_EXPIRED}, status=401)
    pipeline.login_complete(request, user, pending)
    return JsonResponse({"username": user.get_username()})


def _json_text(value) -> str | None:
    """``value`` if it is a string the database can store, else None: PostgreSQL refuses NUL
    characters and lone surrogates (e.g. "\\ud800") cannot be encoded, and either would turn
    the audit entry of the attempt into a 500."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _api_login_fields(request: HttpRequest) -> tuple[str, str, str] | None:
    """(username, password, otp) of a well-formed body, else None (answered 400).

    Small bodies only, no nesting to speak of (a deeply nested document raises RecursionError,
    not ValueError), strings only (a numeric code is accepted as its digits).
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if declared > API_LOGIN_MAX_BODY_BYTES:
        return None
    raw = request.body
    if len(raw) > API_LOGIN_MAX_BODY_BYTES:
        return None
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    otp = body.get("otp", "")
    if isinstance(otp, int) and not isinstance(otp, bool):
        otp = str(otp)
    fields = (_json_text(body.get("username", "")), _json_text(body.get("password", "")), _json_text(otp))
    if any(value is None for value in fields):
        return None
    return fields
