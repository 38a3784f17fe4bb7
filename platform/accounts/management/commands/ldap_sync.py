"""Bring directory accounts in line with the directory (AC-3); safe to run from cron.

For every active directory account: memberships follow the mapped groups (added, re-roled,
removed; manual memberships kept); accounts that left the directory, that the user filter now
excludes (e.g. disabled in AD), or that lost every mapped group are disabled, which ends their
sessions and closes their websockets. If the directory cannot be reached the run stops with an
error and disables nobody.
"""

from __future__ import annotations

import ldap
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.directory.backends import DirectoryBackend
from accounts.directory.group_mapping import mappings_seed_from_settings
from accounts.models import AccountSource, User
from accounts.services import user_disable
from compliance.events import EventType, Outcome
from compliance.services import audit_record

LDAP_DISABLED = "LDAP is not configured (LDAP_SERVER_URI is unset)."
DIRECTORY_UNREACHABLE = "The directory could not be read ({error}); no account was disabled after this point."


class Command(BaseCommand):
    help = "Synchronise directory accounts and memberships with LDAP/AD; disable leavers."

    def add_arguments(self, parser):
        parser.add_argument(
            "--seed-mappings",
            action="store_true",
            help="first create the group mappings of LDAP_GROUP_MAPPINGS_FILE that do not exist yet",
        )

    def handle(self, *args, seed_mappings: bool = False, **options):
        if not settings.LDAP_ENABLED:
            raise CommandError(LDAP_DISABLED)
        if seed_mappings:
            created = mappings_seed_from_settings()
            self.stdout.write(f"group mappings created: {len(created)}")
        backend = DirectoryBackend()
        summary = {"checked": 0, "disabled": [], "added": 0, "removed": 0, "changed": 0}
        try:
            for user in User.objects.filter(source=AccountSource.DIRECTORY, is_active=True).order_by("pk"):
                summary["checked"] += 1
                synced, changes = backend.sync_user(user.username)
                if synced is None:
                    user_disable(
                        user=user, reason="not in the directory (or excluded by LDAP_USER_FILTER)", acting_user="system"
                    )
                    summary["disabled"].append(user.username)
                    continue
                summary["added"] += len(changes.added)
                summary["removed"] += len(changes.removed)
                summary["changed"] += len(changes.changed)
                if not synced.memberships.exists():
                    user_disable(user=synced, reason="no mapped directory group", acting_user="system")
                    summary["disabled"].append(user.username)
        except ldap.LDAPError as exc:
            error = exc.args[0].get("desc", str(exc)) if exc.args and isinstance(exc.args[0], dict) else str(exc)
            audit_record(
                event_type=EventType.DIRECTORY_SYNC,
                outcome=Outcome.FAILURE,
                actor="system",
                details={**summary, "error": error[:500]},
            )
            raise CommandError(DIRECTORY_UNREACHABLE.format(error=error)) from None
        audit_record(event_type=EventType.DIRECTORY_SYNC, actor="system", details=summary)
        self.stdout.write(
            f"checked {summary['checked']}, disabled {len(summary['disabled'])}, memberships "
            f"+{summary['added']} -{summary['removed']} ~{summary['changed']}"
        )
