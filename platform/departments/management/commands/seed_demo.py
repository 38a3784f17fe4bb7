"""Create a demo department and demo accounts — dev profile only.

Passwords are generated at random and printed once; they are never fixed in code. Run again and
nothing changes (the accounts are kept); ``--reset-passwords`` prints new ones.
"""

from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.roles import MembershipRole
from departments.models import Classification, Department, Membership
from departments.services import department_create, membership_add

DEMO_DEPARTMENTS = [
    ("demo", "演示部门 Demo department", Classification.INTERNAL),
    ("quality", "质量部 Quality", Classification.CONFIDENTIAL),
]
DEMO_ACCOUNTS = [
    # username, department slug, role
    ("demo-admin", "demo", MembershipRole.ADMIN),
    ("demo-member", "demo", MembershipRole.MEMBER),
    ("quality-member", "quality", MembershipRole.MEMBER),
]
NOT_DEV_PROFILE = "seed_demo only runs in the dev profile (PLATFORM_PROFILE=dev); production has no demo accounts."


def generate_password(length: int = 16) -> str:
    """Random, with lower, upper, digit and symbol classes all present (the password policy)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        classes = [
            any(c.islower() for c in candidate),
            any(c.isupper() for c in candidate),
            any(c.isdigit() for c in candidate),
            any(not c.isalnum() for c in candidate),
        ]
        if all(classes):
            return candidate


class Command(BaseCommand):
    help = "Create the demo department and demo accounts (dev profile only)."

    def add_arguments(self, parser):
        parser.add_argument("--reset-passwords", action="store_true", help="generate and print new passwords")

    def handle(self, *args, reset_passwords: bool = False, **options):
        if settings.PROFILE != "dev":
            raise CommandError(NOT_DEV_PROFILE)
        User = get_user_model()
        printed = []
        with transaction.atomic():
            departments = {}
            for slug, name, classification in DEMO_DEPARTMENTS:
                department = Department.objects.filter(slug=slug).first()
                if department is None:
                    department = department_create(
                        slug=slug, name=name, classification=classification, acting_user="system"
                    )
                departments[slug] = department
            for username, slug, role in DEMO_ACCOUNTS:
                user = User.objects.filter(username=username).first()
                if user is None or reset_passwords:
                    password = generate_password()
                    if user is None:
                        user = User(username=username)
                    user.set_password(password)
                    user.password_changed_at = timezone.now()
                    user.save()
                    printed.append((username, slug, role, password))
                if not Membership.objects.filter(user=user, department=departments[slug]).exists():
                    membership_add(user=user, department=departments[slug], role=role, acting_user="system")
        if printed:
            self.stdout.write(self.style.WARNING("Demo accounts (passwords are shown only now):"))
            for username, slug, role, password in printed:
                self.stdout.write(f"  {username:<16} {password}   department={slug} role={role}")
        else:
            self.stdout.write("Demo accounts exist already; run `make demo-passwords` to print new passwords.")
