from django.db import migrations
from django.utils import timezone

from departments.triggers import install_migration, remove_migration

UPGRADE_REASON = "upgrade: an administrator account holds no department access (SM-1..3)"


def withdraw_administrators_department_access(apps, schema_editor) -> None:
    """Administrator accounts that hold department access from before this release lose it:
    their memberships are deleted and their department API keys revoked, each audited. What is
    still left (nothing, unless written around the database's guard) the compliance report lists."""
    from compliance.events import EventType
    from compliance.services import audit_record

    User = apps.get_model("accounts", "User")
    Membership = apps.get_model("departments", "Membership")
    ApiKey = apps.get_model("departments", "ApiKey")
    # The check constraint user_admin_role_valid leaves only the three roles besides "".
    administrators = User.objects.exclude(admin_role="")
    now = timezone.now()
    for membership in Membership.objects.filter(user__in=administrators).select_related("user", "department"):
        username = membership.user.username
        audit_record(
            event_type=EventType.MEMBERSHIP_REMOVE,
            actor="system",
            department=membership.department,
            object_type="departments.membership",
            object_id=str(membership.pk),
            object_repr=f"{username} @ {membership.department.slug} ({membership.role})",
            details={
                "user": username,
                "role": membership.role,
                "source": membership.source,
                "admin_role": membership.user.admin_role,
                "reason": UPGRADE_REASON,
            },
        )
        membership.delete()
    keys = ApiKey._base_manager.filter(created_by__in=administrators, department__isnull=False, revoked_at__isnull=True)
    for key in keys.select_related("created_by", "department"):
        audit_record(
            event_type=EventType.API_KEY_REVOKE,
            actor="system",
            department=key.department,
            object_type="departments.apikey",
            object_id=str(key.pk),
            object_repr=f"{key.prefix}… {key.name}",
            details={
                "prefix": key.prefix,
                "name": key.name,
                "created_by": key.created_by.username,
                "admin_role": key.created_by.admin_role,
                "reason": UPGRADE_REASON,
            },
        )
        ApiKey._base_manager.filter(pk=key.pk).update(revoked_at=now, revoked_by_name="system")


class Migration(migrations.Migration):
    """The separation of duties made true for existing data, then guarded by the database
    (departments/triggers.py). Audit entries are written by the live ``audit_record``, so this
    runs after every migration of the audit app, whatever their number.

    Not reversible in its data: withdrawn access is not given back (the triggers are removed).
    """

    dependencies = [
        ("departments", "0002_api_keys"),
        ("accounts", "0002_identity_and_access"),
        ("compliance", "__latest__"),
    ]

    operations = [
        migrations.RunPython(withdraw_administrators_department_access, migrations.RunPython.noop),
        migrations.RunPython(install_migration, remove_migration),
    ]
