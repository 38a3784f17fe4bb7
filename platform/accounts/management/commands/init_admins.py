"""First run: create the three separated administrators with passwords chosen now (AC-2).

There are no default accounts. Passwords are typed at the prompt, or, for automation, read from
the files named by INIT_SYSTEM_ADMIN_PASSWORD_FILE, INIT_SECURITY_ADMIN_PASSWORD_FILE and
INIT_AUDIT_ADMIN_PASSWORD_FILE. Refuses to run once any administrator exists: later changes go
through the security administrator's console.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import AccountSource, User
from accounts.permissions import administrators_filter
from accounts.roles import AdminRole
from compliance.events import EventType
from compliance.services import audit_record

ADMINS_EXIST = "Administrators exist already; init_admins only runs on a fresh installation."
USERNAME_TAKEN = "The user name {username!r} is taken."
PASSWORDS_MUST_DIFFER = "The three administrators need three different passwords."
NO_TERMINAL = "No terminal to prompt on: set {variable} to a file holding the password."

ROLES = [
    (AdminRole.SYSTEM, "sysadmin", "INIT_SYSTEM_ADMIN_PASSWORD_FILE"),
    (AdminRole.SECURITY, "secadmin", "INIT_SECURITY_ADMIN_PASSWORD_FILE"),
    (AdminRole.AUDIT, "auditadmin", "INIT_AUDIT_ADMIN_PASSWORD_FILE"),
]


class Command(BaseCommand):
    help = "Create the system, security and audit administrators (first run only)."

    def add_arguments(self, parser):
        for role, default, _ in ROLES:
            parser.add_argument(f"--{role}", default=default, help=f"user name of the {role} administrator")

    def _password(self, role: str, username: str, variable: str) -> str:
        path = os.environ.get(variable)
        if path:
            try:
                password = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"{variable}={path!r} cannot be read: {exc.strerror}") from None
            if not password:
                raise CommandError(f"{variable}={path!r} is empty")
            return password
        if not sys.stdin.isatty():
            raise CommandError(NO_TERMINAL.format(variable=variable))
        while True:
            first = getpass.getpass(f"Password for {username} ({role} administrator): ")
            if first == getpass.getpass("Again: "):
                return first
            self.stderr.write("The two entries differ; try again.")

    def handle(self, *args, **options):
        if administrators_filter(User.objects).exists():
            raise CommandError(ADMINS_EXIST)
        planned = []
        for role, _, variable in ROLES:
            username = options[role]
            if User.objects.filter(username__iexact=username).exists():
                raise CommandError(USERNAME_TAKEN.format(username=username))
            password = self._password(role, username, variable)
            try:
                validate_password(password, User(username=username))
            except ValidationError as exc:
                raise CommandError(f"{username}: " + " ".join(exc.messages)) from None
            planned.append((role, username, password))
        if len({password for _, _, password in planned}) != len(planned):
            raise CommandError(PASSWORDS_MUST_DIFFER)
        with transaction.atomic():
            if administrators_filter(User.objects.select_for_update()).exists():  # a concurrent run
                raise CommandError(ADMINS_EXIST)
            for role, username, password in planned:
                user = User(username=username, admin_role=role, source=AccountSource.LOCAL)
                user.set_password(password)
                user.password_changed_at = timezone.now()
                user.full_clean()
                user.save()
                audit_record(event_type=EventType.USER_CREATE, actor="system", obj=user, details={"via": "init_admins"})
                audit_record(
                    event_type=EventType.ROLE_CHANGE,
                    actor="system",
                    obj=user,
                    details={"before": {"admin_role": ""}, "after": {"admin_role": role}},
                )
        for role, username, _ in planned:
            self.stdout.write(f"created {username} ({role} administrator)")
        self.stdout.write("Each administrator sets up two-factor authentication at the first sign-in.")
