"""API keys: how OA/ERP/MES systems call the platform without a browser.

A key belongs to one department (or, for the audit administrator's ``audit:read`` keys, to no
department: the trail spans them all). Only a SHA-256 of the secret is stored; the full key is
shown once, at creation. Keys carry a recognisable prefix (``mmk_``) so a leaked one can be found
in logs and code, scopes, an expiry, optional allowed networks and who created them. Audit
entries name the key *and* its creator through ``audit_name``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.context import address_in
from departments.tenancy import DepartmentScopedManager

KEY_PREFIX = "mmk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # what is stored in clear and shown in lists: "mmk_AbCd1234"


class Scope(models.TextChoices):
    CHAT = "chat", _("Chat (/v1/chat/completions)")
    ASSETS_READ = "assets:read", _("Read files")
    ASSETS_WRITE = "assets:write", _("Upload and delete files")
    EXTRACT = "extract", _("Structured extraction and batch jobs")
    AUDIT_READ = "audit:read", _("Read and export the audit trail (audit administrator only)")


DEPARTMENT_SCOPES = frozenset({Scope.CHAT, Scope.ASSETS_READ, Scope.ASSETS_WRITE, Scope.EXTRACT})

SCOPES_EMPTY = _("Choose at least one scope.")
SCOPE_UNKNOWN = _("Unknown scope: %(scope)s.")
AUDIT_SCOPE_ONLY_FOR_AUDITOR = _(
    "The audit:read scope is only for keys owned by the audit administrator, with no department and no other scope."
)
DEPARTMENT_REQUIRED = _("A key needs a department (only the audit administrator's audit keys have none).")
NETWORK_INVALID = _("Not a network: %(value)s (use e.g. 10.1.2.0/24 or 192.0.2.7).")
EXPIRY_IN_PAST = _("The expiry must be in the future.")
ADMINISTRATOR_KEY_REFUSED = _("An administrator account cannot own a department API key.")


def key_hash(raw_key: str) -> str:
    """SHA-256 of the whole key. The secret part has 256 bits of entropy, so a plain hash is
    enough (no salt or slow hash needed: nothing to brute-force), and look-ups are one index probe."""
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def networks_parse(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(str(value).strip(), strict=False) for value in values]


class ApiKey(models.Model):
    # Recognised by audit_record: an authenticated principal that is not a user.
    is_authenticated = True
    is_anonymous = False
    is_api_key = True

    department = models.ForeignKey(
        "departments.Department",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
        verbose_name=_("department"),
    )
    name = models.CharField(_("name"), max_length=100, help_text=_("What calls with it, e.g. the OA approval system."))
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    allowed_networks = models.JSONField(_("allowed networks"), default=list, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("creator's account"),
    )
    # Frozen, so the key (and the trail) still says who created it after the account is gone.
    created_by_name = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(_("last used from"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by_name = models.CharField(_("revoked by"), max_length=150, blank=True)

    objects = DepartmentScopedManager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        indexes = [models.Index(fields=["department", "-created_at"], name="api_key_department_recent")]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name}"

    @property
    def audit_name(self) -> str:
        return f"key:{self.prefix} ({self.created_by_name or '?'})"

    @property
    def is_audit_key(self) -> bool:
        return Scope.AUDIT_READ in self.scopes

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def network_allowed(self, source_ip: str | None) -> bool:
        if not self.allowed_networks:
            return True
        return address_in(source_ip, networks_parse(self.allowed_networks))

    def clean(self) -> None:
        errors: dict[str, list] = {}
        if not self.scopes:
            errors.setdefault("scopes", []).append(SCOPES_EMPTY)
        for scope in self.scopes:
            if scope not in Scope.values:
                errors.setdefault("scopes", []).append(SCOPE_UNKNOWN % {"scope": scope})
        if Scope.AUDIT_READ in self.scopes:
            from accounts.permissions import Action, allowed

            auditor = allowed(self.created_by, Action.AUDIT_VIEW)
            if not auditor or self.department_id is not None or len(self.scopes) != 1:
                errors.setdefault("scopes", []).append(AUDIT_SCOPE_ONLY_FOR_AUDITOR)
        elif self.department_id is None:
            errors.setdefault("department", []).append(DEPARTMENT_REQUIRED)
        elif self.revoked_at is None:
            from accounts.permissions import Action, allowed

            # Administrators hold no department data (SM-1..3); the database refuses it too.
            if not allowed(self.created_by, Action.DEPARTMENT_ACCESS_HOLD):
                errors.setdefault("department", []).append(ADMINISTRATOR_KEY_REFUSED)
        for value in self.allowed_networks or []:
            try:
                ipaddress.ip_network(str(value).strip(), strict=False)
            except ValueError:
                errors.setdefault("allowed_networks", []).append(NETWORK_INVALID % {"value": value})
        if self._state.adding and self.expires_at and self.expires_at <= timezone.now():
            errors.setdefault("expires_at", []).append(EXPIRY_IN_PAST)
        if errors:
            raise ValidationError(errors)
