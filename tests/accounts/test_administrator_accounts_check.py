"""``manage.py check --deploy --database default``: the three administrators exist (accounts.W001)."""

from __future__ import annotations

import pytest

from accounts.checks import check_administrator_accounts
from accounts.roles import AdminRole

pytestmark = pytest.mark.django_db


def _missing_roles_warning():
    return [
        problem
        for problem in check_administrator_accounts(None, databases=["default"])
        if problem.id == "accounts.W001"
    ]


def test_each_missing_administrator_role_is_named(make_user):
    assert _missing_roles_warning()[0].msg == "Missing administrator role(s): audit, security, system"
    make_user("sys", admin_role=AdminRole.SYSTEM)
    make_user("plain")
    assert _missing_roles_warning()[0].msg == "Missing administrator role(s): audit, security"


def test_no_warning_once_the_three_exist(make_user):
    for role in (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT):
        make_user(f"holder-{role}", admin_role=role)
    assert _missing_roles_warning() == []
