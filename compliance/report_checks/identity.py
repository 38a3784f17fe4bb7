"""The compliance report's checks: 身份鉴别 identification and authentication (IA-1..4)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Lower
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, control, line, manual, not_applicable
from compliance.report_checks.live import (
    NONE,
    listing,
    tls,
    users,
)


@control("IA-1", _("Unique identities; password complexity and expiry"))
def check_ia1() -> list[Evidence]:
    from accounts.login_policy import current_policy

    table = get_user_model()._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    unique_in_database = any(c["unique"] and c["columns"] == ["username"] for c in constraints.values())
    clashes = list(
        users()
        .annotate(folded=Lower("username"))
        .values("folded")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("folded", flat=True)
    )
    validators = settings.AUTH_PASSWORD_VALIDATORS
    min_length = next(
        (v.get("OPTIONS", {}).get("min_length", 8) for v in validators if v["NAME"].endswith("MinimumLengthValidator")),
        0,
    )
    classes = next(
        (
            v.get("OPTIONS", {}).get("min_classes", 0)
            for v in validators
            if v["NAME"].endswith("CharacterClassValidator")
        ),
        0,
    )
    max_age = current_policy().password_max_age_days
    return [
        line(
            unique_in_database,
            _("the database enforces unique user names on {table}: {unique}"),
            table=table,
            unique=unique_in_database,
        ),
        line(not clashes, _("user names differing only in case: {names}"), names=listing(clashes) or NONE),
        line(min_length >= 8, _("minimum password length {length}"), length=min_length),
        line(classes >= 3, _("at least {classes} character classes required"), classes=classes),
        line(0 < max_age <= 90, _("local passwords expire after {days} days (policy in force)"), days=max_age),
    ]


@control("IA-2", _("Login failure handling and idle timeout"))
def check_ia2() -> list[Evidence]:
    from accounts.login_policy import current_policy

    policy = current_policy()
    return [
        line(
            policy.login_max_failures <= 5,
            _("lock after {failures} consecutive failures (account and address)"),
            failures=policy.login_max_failures,
        ),
        line(policy.login_lockout_seconds >= 1800, _("locked for {seconds} s"), seconds=policy.login_lockout_seconds),
        line(
            policy.session_idle_seconds <= 1800,
            _("idle sessions end after {seconds} s"),
            seconds=policy.session_idle_seconds,
        ),
    ]


@control("IA-3", _("Credentials never cross the network in clear text"))
def check_ia3() -> list[Evidence]:
    from compliance.report_probes import HSTS_MIN_SECONDS, cookie_flags, hsts_max_age

    probe = tls()
    evidence: list[Evidence] = []
    if probe.problem:
        evidence.append(line(False, probe.problem_template, **probe.problem_params))
    else:
        handshake = probe.handshakes["TLSv1.3"]
        evidence.append(
            line(
                bool(handshake.accepted),
                _("PUBLIC_URL {url}: TLS 1.3 {detail}"),
                url=probe.url,
                detail=handshake.detail,
            )
        )
        if probe.response_status is None:
            if handshake.accepted:
                evidence.append(
                    line(False, _("no HTTPS response from PUBLIC_URL: {problem}"), problem=probe.response_problem)
                )
        else:
            max_age = hsts_max_age(probe.hsts)
            evidence.append(
                line(
                    max_age is not None and max_age >= HSTS_MIN_SECONDS,
                    _("Strict-Transport-Security on the sign-in page: {value}"),
                    value=probe.hsts or NONE,
                )
            )
            if not probe.cookies:
                evidence.append(
                    manual(
                        _(
                            "the sign-in page (HTTP {status}) set no cookie: sign in over PUBLIC_URL and check that "
                            "the session cookie is Secure and HttpOnly"
                        ),
                        status=probe.response_status,
                    )
                )
            for cookie in probe.cookies:
                name, flags = cookie_flags(cookie)
                evidence.append(
                    line(
                        {"secure", "httponly"} <= flags,
                        _("cookie {name} set by the sign-in page: {flags}"),
                        name=name,
                        flags=listing(sorted(flags)) or NONE,
                    )
                )
    session_secure = bool(getattr(settings, "SESSION_COOKIE_SECURE", False))
    evidence.append(
        line(
            session_secure and settings.SESSION_COOKIE_HTTPONLY,
            _("session cookie {name}: Secure {secure}, HttpOnly {httponly}"),
            name=settings.SESSION_COOKIE_NAME,
            secure=session_secure,
            httponly=settings.SESSION_COOKIE_HTTPONLY,
        )
    )
    uri = getattr(settings, "AUTH_LDAP_SERVER_URI", "") or ""
    if not uri:
        evidence.append(not_applicable(_("directory login is off (LDAP_SERVER_URI is empty): no directory binds")))
    else:
        start_tls = bool(getattr(settings, "AUTH_LDAP_START_TLS", False))
        transport = "LDAPS" if uri.startswith("ldaps://") else ("StartTLS" if start_tls else "plain LDAP")
        evidence.append(
            line(
                transport != "plain LDAP", _("directory binds to {uri} over {transport}"), uri=uri, transport=transport
            )
        )
    return evidence


@control("IA-4", _("Two-factor authentication (password + TOTP) for administrators"))
def check_ia4() -> list[Evidence]:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.permissions import administrators_filter

    admins = list(administrators_filter(users().filter(is_active=True)).values_list("pk", "username"))
    enrolled = set(
        TOTPDevice.objects.filter(user_id__in=[pk for pk, _name in admins], confirmed=True).values_list(
            "user_id", flat=True
        )
    )
    missing = [name for pk, name in admins if pk not in enrolled]
    if not admins:
        return [line(False, _("no active administrator account"))]
    return [
        line(
            not missing,
            _("{count} active administrators; without a confirmed TOTP device: {names}"),
            count=len(admins),
            names=listing(missing) or NONE,
        ),
    ]
