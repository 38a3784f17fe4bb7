from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.roles import AdminRole, MembershipRole
from departments.models import Department

SUPERUSER_REFUSED = (
    "Superusers are not used in production: administration goes through the three separated "
    "administrator roles (manage.py init_admins)."
)


class AccountSource(models.TextChoices):
    LOCAL = "local", _("Local account")
    DIRECTORY = "directory", _("Directory (LDAP/AD)")


class PlatformUserManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        if settings.IS_PRODUCTION:
            raise ValidationError(SUPERUSER_REFUSED)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    admin_role = models.CharField(
        _("administrator role"), max_length=16, choices=AdminRole.choices, default="", blank=True
    )
    source = models.CharField(
        _("account source"), max_length=16, choices=AccountSource.choices, default=AccountSource.LOCAL
    )
    employee_number = models.CharField(_("employee number"), max_length=64, blank=True)
    password_changed_at = models.DateTimeField(_("password changed at"), null=True, blank=True)
    # Set when an administrator chose the password (or reset it): the owner must replace it.
    must_change_password = models.BooleanField(_("must change password"), default=False)

    objects = PlatformUserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            # The three administrators are local break-glass accounts: a directory entry with the
            # same name must never be able to sign in as one of them.
            models.CheckConstraint(
                condition=models.Q(admin_role="") | models.Q(source="local"),
                name="user_admin_role_local_only",
            ),
            models.CheckConstraint(
                condition=models.Q(admin_role__in=AdminRole.values),  # the roles, or none
                name="user_admin_role_valid",
            ),
        ]

    def save(self, *args, **kwargs):
        # Refused here and in the manager; the permission layer also ignores is_superuser, so a
        # row written around the ORM still grants nothing.
        if self.is_superuser and settings.IS_PRODUCTION:
            raise ValidationError(SUPERUSER_REFUSED)
        super().save(*args, **kwargs)

    # Django's PermissionsMixin answers True to everything for an active superuser and otherwise
    # consults the permission tables. Here the answer comes from the role matrix alone.
    def has_perm(self, perm: str, obj=None) -> bool:
        from accounts.permissions import console_permission

        return console_permission(self, perm)

    def has_perms(self, perm_list, obj=None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        from accounts.permissions import console_module_permission

        return console_module_permission(self, app_label)


class AdministratorRole(User):
    """The admin-role assignment as its own console entry, for the security administrator only."""

    class Meta:
        proxy = True
        verbose_name = _("administrator role assignment")
        verbose_name_plural = _("administrator role assignments")


class DepartmentLabel(Department):
    """A department's security label (安全标记, AC-7), for the security administrator only."""

    class Meta:
        proxy = True
        verbose_name = _("department security label")
        verbose_name_plural = _("department security labels")


class DirectoryGroupMapping(models.Model):
    """A directory group whose members belong to a department with a role (applied at every login).

    Platform policy, not department data: the security administrator edits mappings of every
    department in one list, so the plain manager is used (like ``Membership``).
    """

    group_dn = models.CharField(_("directory group DN"), max_length=500)
    department = models.ForeignKey(
        "departments.Department", on_delete=models.CASCADE, related_name="group_mappings", verbose_name=_("department")
    )
    role = models.CharField(_("role"), max_length=16, choices=MembershipRole.choices, default=MembershipRole.MEMBER)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["group_dn", "department__slug"]
        verbose_name = _("directory group mapping")
        verbose_name_plural = _("directory group mappings")
        constraints = [
            models.UniqueConstraint(fields=["group_dn", "department"], name="group_mapping_unique_dn_department"),
        ]

    def __str__(self) -> str:
        return f"{self.group_dn} → {self.department.slug} ({self.role})"

    def save(self, *args, **kwargs):
        from accounts.directory.group_mapping import normalise_dn

        # Stored normalised however it was written, so that look-ups by DN compare like with like.
        self.group_dn = normalise_dn(self.group_dn)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from accounts.directory.group_mapping import normalise_dn

        self.group_dn = normalise_dn(self.group_dn)
        if "=" not in self.group_dn:
            raise ValidationError({"group_dn": _("Enter a distinguished name, e.g. cn=finance,ou=groups,dc=example")})


class LoginThrottle(models.Model):
    """Consecutive failures of one account name or one source address (IA-2).

    Interactive sign-in counts per account name and per address; bad API keys per address in a
    bucket of their own (``API_ADDRESS``).

    Kept in the database so that every application process sees the same counters. The account
    key is the lower-cased name as typed, whether or not such a user exists, so a lockout says
    nothing about existence.
    """

    class Kind(models.TextChoices):
        ACCOUNT = "account", _("Account")
        ADDRESS = "address", _("Source address")
        # Bad API keys count apart from interactive sign-in: one integration with a stale key
        # behind a shared address (an office NAT) must not lock out the people behind it.
        API_ADDRESS = "api_address", _("Source address (API keys)")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    key = models.CharField(_("account or address"), max_length=150)
    failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    first_failure_at = models.DateTimeField(_("first failure"), null=True, blank=True)
    last_failure_at = models.DateTimeField(_("last failure"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        ordering = ["-last_failure_at"]
        verbose_name = _("login lock")
        verbose_name_plural = _("login locks")
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="login_throttle_unique_kind_key")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"


class UserSession(models.Model):
    """Which sessions belong to whom, so that they can all be ended (logout, disable, demotion)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="session_records")
    session_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)

    class Meta:
        verbose_name = _("user session")
        verbose_name_plural = _("user sessions")

    def __str__(self) -> str:
        return f"session of user {self.user_id} since {self.created_at:%Y-%m-%d %H:%M}"


class SecurityPolicy(models.Model):
    """The login and session parameters, editable by the security administrator (SM-2).

    One row at most. The database refuses values weaker than MLPS Level 3 allows; without a row,
    the values come from the environment (LOGIN_MAX_FAILURES, ...).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    login_max_failures = models.PositiveSmallIntegerField(_("failures before lockout"), default=5)
    login_lockout_seconds = models.PositiveIntegerField(_("lockout duration (seconds)"), default=1800)
    session_idle_seconds = models.PositiveIntegerField(_("idle session timeout (seconds)"), default=1800)
    password_max_age_days = models.PositiveSmallIntegerField(_("password expiry (days)"), default=90)
    updated_at = models.DateTimeField(_("changed at"), auto_now=True)

    class Meta:
        verbose_name = _("security policy")
        verbose_name_plural = _("security policy")
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="security_policy_singleton"),
            models.CheckConstraint(
                condition=models.Q(login_max_failures__gte=1, login_max_failures__lte=5),
                name="security_policy_failures_1_5",
            ),
            models.CheckConstraint(
                condition=models.Q(login_lockout_seconds__gte=1800), name="security_policy_lockout_min"
            ),
            models.CheckConstraint(
                condition=models.Q(session_idle_seconds__gte=60, session_idle_seconds__lte=1800),
                name="security_policy_idle_60_1800",
            ),
            models.CheckConstraint(
                condition=models.Q(password_max_age_days__gte=1, password_max_age_days__lte=90),
                name="security_policy_password_age_1_90",
            ),
        ]

    def __str__(self) -> str:
        return str(_("security policy"))
