"""Local password policy (IA-1): character classes, expiry, forced change."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.login_policy import current_policy
from accounts.models import AccountSource
from compliance.events import EventType
from compliance.services import audit_record

PASSWORD_CLASSES_TOO_FEW = "password_too_few_classes"  # noqa: S105  (a code, not a password)


def character_classes(password: str) -> int:
    """How many of lower case, upper case, digits and other characters the password uses."""
    return sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )


class CharacterClassValidator:
    """At least ``min_classes`` of: lower case, upper case, digits, other characters."""

    def __init__(self, min_classes: int = 3):
        self.min_classes = min_classes

    def validate(self, password: str, user=None) -> None:
        if character_classes(password) < self.min_classes:
            raise ValidationError(self.get_help_text(), code=PASSWORD_CLASSES_TOO_FEW)

    def get_help_text(self) -> str:
        return ngettext(
            "Your password must use at least %(n)d of: lower-case letters, upper-case letters, digits, symbols.",
            "Your password must use at least %(n)d of: lower-case letters, upper-case letters, digits, symbols.",
            self.min_classes,
        ) % {"n": self.min_classes}


def password_expired(user) -> bool:
    """Local accounts only: directory accounts follow the directory's policy."""
    if user.source != AccountSource.LOCAL:
        return False
    if user.must_change_password:
        return True
    changed = user.password_changed_at or user.date_joined
    return timezone.now() - changed > timedelta(days=current_policy().password_max_age_days)


@transaction.atomic
def password_set(*, user, raw_password: str, acting_user=None, must_change: bool = False) -> None:
    """Set a local password (validated) and record when; audited without the password."""
    from django.contrib.auth.password_validation import validate_password

    if user.source != AccountSource.LOCAL:
        raise ValidationError(_("Directory accounts change their password in the directory."))
    validate_password(raw_password, user)
    user.set_password(raw_password)
    user.password_changed_at = timezone.now()
    user.must_change_password = must_change
    user.save(update_fields=["password", "password_changed_at", "must_change_password"])
    audit_record(
        event_type=EventType.PASSWORD_CHANGE,
        actor=acting_user,  # None: whoever the request context names (the administrator)
        obj=user,
        details={"must_change": must_change},
    )
