"""The compliance report's checks: 入侵防范 intrusion prevention (IP-1..3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, control, line, manual
from compliance.report_checks.live import (
    DEPENDENCY_AUDIT_MAX_AGE,
    NONE,
    listing,
)


@control("IP-1", _("Administration only from configured networks"))
def check_ip1() -> list[Evidence]:
    from accounts.permissions import admin_network_allowed

    networks = settings.ADMIN_ALLOWED_NETWORKS
    # A /16 or wider (IPv4; /48 for IPv6) is a whole site's intranet, not an administration network.
    # Loopback is the host itself (the default until the operator names the administrators' subnet).
    broad = [n for n in networks if n.prefixlen < (16 if n.version == 4 else 48) and not n.is_loopback]
    evidence = [
        line(
            bool(networks) and not broad,
            _("admin networks: {networks}; too broad: {broad}"),
            networks=listing(networks) or NONE,
            broad=listing(broad) or NONE,
        )
    ]
    # Asked of the function every request asks: would a trusted proxy's address pass as an administrator's?
    proxies = settings.TRUSTED_PROXIES
    admitted = [
        f"{proxy} ({address})"
        for proxy in proxies
        for address in {proxy.network_address, proxy.broadcast_address}
        if admin_network_allowed(str(address))
        or any(network.overlaps(proxy) for network in networks if network.version == proxy.version)
    ]
    evidence.append(
        line(
            not admitted,
            _("trusted proxies: {proxies}; inside an admin network: {admitted}"),
            proxies=listing(proxies) or NONE,
            admitted=listing(sorted(set(admitted))) or NONE,
        )
    )
    outsider = "203.0.113.7"  # TEST-NET-3: outside every private administration network
    evidence.append(
        line(
            not admin_network_allowed(outsider) and "accounts.middleware.AdminNetworkMiddleware" in settings.MIDDLEWARE,
            _("administration from {address} refused: {refused}"),
            address=outsider,
            refused=not admin_network_allowed(outsider),
        )
    )
    return evidence


@control("IP-2", _("All input validated"))
def check_ip2() -> list[Evidence]:
    return [
        line(settings.MAX_UPLOAD_MB <= 1024, _("uploads up to {mb} MB"), mb=settings.MAX_UPLOAD_MB),
        line(bool(settings.MAX_IMAGE_PIXELS), _("pixel limit per image {pixels}"), pixels=settings.MAX_IMAGE_PIXELS),
        line(bool(settings.MAX_PDF_PAGES), _("PDF page limit {pages}"), pages=settings.MAX_PDF_PAGES),
        line(
            settings.API_MAX_BODY_MB <= 1024,
            _("REST bodies up to {mb} MB, refused unread above"),
            mb=settings.API_MAX_BODY_MB,
        ),
    ]


@control("IP-3", _("Known-vulnerable dependencies are found"))
def check_ip3() -> list[Evidence]:
    path = Path(settings.DEPENDENCY_AUDIT_RESULT)
    if not path.is_file():
        return [
            manual(
                _(
                    "no dependency audit result at DEPENDENCY_AUDIT_RESULT={path}: enable "
                    "deploy/systemd/platform-dependency-audit.timer (scripts/dependency_audit.py), or show the "
                    "assessor the organisation's own audit"
                ),
                path=str(path),
            )
        ]
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        checked = datetime.fromisoformat(result["checked_at"])
    except (OSError, ValueError, KeyError) as exc:
        return [line(False, _("DEPENDENCY_AUDIT_RESULT={path} is unreadable: {error}"), path=str(path), error=str(exc))]
    fresh = datetime.now(UTC) - checked <= DEPENDENCY_AUDIT_MAX_AGE
    evidence = [
        line(
            result.get("status") == "clean",
            _(
                "dependency audit {status}: {packages} packages, {findings} findings, {accepted} accepted, "
                "{unverified} unverified"
            ),
            status=result.get("status", "?"),
            packages=result.get("packages", "?"),
            findings=len(result.get("findings", [])),
            accepted=len(result.get("accepted", [])),
            unverified=len(result.get("unverified", [])),
        ),
        line(
            fresh,
            _("checked at {time} (at most {days} days old)"),
            time=result["checked_at"],
            days=DEPENDENCY_AUDIT_MAX_AGE.days,
        ),
    ]
    source = result.get("vulnerability_service") or result.get("index_url")
    if not source:
        evidence.append(
            manual(
                _(
                    "the result does not say which advisory service it used: show the assessor the scheduled run "
                    "and its service"
                )
            )
        )
    return evidence
