"""``flush`` that knows about the append-only audit tables.

Django's ``flush`` (also run by transactional tests between cases) empties every table, which
the audit triggers refuse. Outside production it lifts the triggers for the flush and puts them
back; in production it refuses: emptying the audit trail is exactly what AU-3 forbids.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.flush import Command as DjangoFlushCommand
from django.db import DEFAULT_DB_ALIAS, connections

from compliance.triggers import GUARDED_TABLES, triggers_install, triggers_remove

FLUSH_REFUSED = "flush would empty the audit trail; it is refused in the production profile"


class Command(DjangoFlushCommand):
    def handle(self, **options):
        if settings.IS_PRODUCTION:
            raise CommandError(FLUSH_REFUSED)
        connection = connections[options.get("database") or DEFAULT_DB_ALIAS]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for table in GUARDED_TABLES:
                    cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            try:
                return super().handle(**options)
            finally:
                with connection.cursor() as cursor:
                    for table in GUARDED_TABLES:
                        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        triggers_remove(connection)
        try:
            return super().handle(**options)
        finally:
            triggers_install(connection)
