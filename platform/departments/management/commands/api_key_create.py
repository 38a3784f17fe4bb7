"""Create an API key from the command line and print it (once).

manage.py api_key_create --department finance --name ERP --scope chat --scope extract [--days 90]
manage.py api_key_create --audit --owner auditor --name SIEM      # audit:read, the audit administrator's
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.permissions import Refused
from departments.api_keys.models import Scope
from departments.api_keys.services import api_key_create
from departments.models import Department


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--department", help="department slug (not with --audit)")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", action="append", default=[], choices=Scope.values)
        parser.add_argument("--owner", required=True, help="user name of the key's owner (creator)")
        parser.add_argument("--days", type=int, default=None)
        parser.add_argument("--network", action="append", default=[], help="allowed network (repeatable)")
        parser.add_argument("--audit", action="store_true", help="an audit:read key of the audit administrator")

    def handle(self, *args, **options):
        owner = get_user_model().objects.filter(username=options["owner"]).first()
        if owner is None:
            raise CommandError(f"no user {options['owner']!r}")
        department = None
        scopes = options["scope"]
        if options["audit"]:
            scopes = [Scope.AUDIT_READ]
        else:
            department = Department.objects.filter(slug=options["department"] or "").first()
            if department is None:
                raise CommandError("--department must name an existing department")
        expires = timezone.now() + timedelta(days=options["days"]) if options["days"] else None
        try:
            created = api_key_create(
                department=department,
                name=options["name"],
                scopes=scopes,
                created_by=owner,
                expires_at=expires,
                allowed_networks=options["network"],
                acting_user="system",
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except Refused as refusal:  # an administrator as --owner of a department key (recorded)
            raise CommandError(str(refusal)) from None
        self.stdout.write(created.raw_key)
