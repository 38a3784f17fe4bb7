"""Every wrong-role request in the administrators' console leaves one ``access.denied`` entry that
names what it refused: the model (and object) for a model's page, the page for the console's own
pages (the audit console, the compliance report) — as each of the three administrators.

The review's probe: 9 of 9 wrong-role console requests left no entry.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.test import Client

from accounts.models import SecurityPolicy
from accounts.roles import AdminRole
from compliance.events import EventType, Outcome
from compliance.models import AuditEntry, RetentionPolicy
from departments.tenancy import department_scope
from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback_is_an_admin_network(settings):
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def console(personas, make_admin, system_context):
    """A console client per administrator role (password + TOTP), and objects to ask for."""
    clients = {}
    for role in (AdminRole.SYSTEM, AdminRole.SECURITY, AdminRole.AUDIT):
        user, device = make_admin(str(role))
        client = Client()
        sign_in_with_totp(client, user, device)
        client.user = user
        clients[str(role)] = client
    SecurityPolicy.objects.create(login_max_failures=5, login_lockout_seconds=1800)
    with department_scope(personas.department_a):
        RetentionPolicy.objects.create(department=personas.department_a, conversation_days=365)
    return clients


def _objects(personas):
    from departments.models import Membership

    return {
        "user": personas.member.pk,
        "department": personas.department_a.pk,
        "membership": Membership.objects.get(user=personas.member).pk,
        "security_policy": SecurityPolicy.objects.get().pk,
        "retention": RetentionPolicy._base_manager.get().pk,
        "entry": AuditEntry.objects.order_by("sequence").first().sequence,
    }


# (method, path, what the entry must name: a model label, or None for a page of its own)
def wrong_requests(role: str, ids: dict) -> list[tuple[str, str, str | None]]:
    u, d, m, p, r, e = (ids[k] for k in ("user", "department", "membership", "security_policy", "retention", "entry"))
    system_pages = [
        ("GET", "/admin/accounts/user/", "accounts.user"),
        ("GET", "/admin/accounts/user/add/", "accounts.user"),
        ("GET", f"/admin/accounts/user/{u}/change/", "accounts.user"),
        ("POST", f"/admin/accounts/user/{u}/change/", "accounts.user"),
        ("GET", "/admin/departments/department/add/", "departments.department"),
        ("GET", f"/admin/departments/department/{d}/change/", "departments.department"),
    ]
    security_pages = [
        ("GET", "/admin/departments/membership/", "departments.membership"),
        ("GET", "/admin/departments/membership/add/", "departments.membership"),
        ("POST", f"/admin/departments/membership/{m}/delete/", "departments.membership"),
        ("GET", f"/admin/accounts/securitypolicy/{p}/change/", "accounts.securitypolicy"),
        ("GET", "/admin/compliance/retentionpolicy/", "compliance.retentionpolicy"),
        ("GET", "/admin/compliance/retentionpolicy/add/", "compliance.retentionpolicy"),
        ("POST", f"/admin/compliance/retentionpolicy/{r}/change/", "compliance.retentionpolicy"),
        ("GET", "/admin/departments/apikey/", "departments.apikey"),
        ("GET", "/admin/inference/chatpolicy/", "inference.chatpolicy"),
    ]
    audit_pages = [
        ("GET", "/admin/compliance/auditentry/", "compliance.auditentry"),
        ("GET", f"/admin/compliance/auditentry/{e}/change/", "compliance.auditentry"),
        ("GET", "/admin/compliance/auditarchive/", "compliance.auditarchive"),
        ("GET", "/audit/", None),
        ("GET", "/audit/archives/", None),
        ("POST", "/audit/export/", None),
    ]
    report = [("GET", "/compliance/report/", None)]  # the security and audit administrators'
    return {
        "system": security_pages + audit_pages + report,
        "security": system_pages + audit_pages,
        "audit": system_pages + security_pages,
    }[role]


@pytest.mark.parametrize("role", ["system", "security", "audit"])
def test_every_wrong_role_console_request_leaves_an_entry_naming_what_it_refused(console, personas, role):
    client = console[role]
    requests = wrong_requests(role, _objects(personas))
    assert len(requests) >= 9
    problems = []
    for method, path, model in requests:
        before = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).count()
        response = client.post(path, {}) if method == "POST" else client.get(path)
        entries = list(AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("sequence")[before:])
        if response.status_code != 403:
            problems.append(f"{method} {path}: {response.status_code}")
            continue
        if len(entries) != 1:
            problems.append(f"{method} {path}: {len(entries)} entries")
            continue
        [entry] = entries
        named = (entry.object_type if model else entry.object_repr) == (model or path)
        if not (named and entry.details["path"] == path and entry.details["method"] == method):
            problems.append(f"{method} {path}: entry names {entry.object_type} {entry.object_repr} {entry.details}")
        if (entry.actor_name, entry.outcome) != (client.user.username, Outcome.DENIED):
            problems.append(f"{method} {path}: entry by {entry.actor_name}, {entry.outcome}")
    assert problems == []


def test_a_refused_object_page_names_the_object_and_the_action_it_needed(console, personas):
    membership = _objects(personas)["membership"]
    path = f"/admin/departments/membership/{membership}/change/"
    assert console["system"].post(path, {"role": "admin"}).status_code == 403
    entry = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).latest("sequence")
    assert (entry.object_type, entry.object_id, entry.details["action"], entry.details["console_page"]) == (
        "departments.membership",
        str(membership),
        "membership.manage",
        "change_view",
    )


def test_an_app_page_of_another_role_is_recorded_once(console):
    before = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).count()
    assert console["audit"].get("/admin/departments/").status_code == 404
    entries = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("sequence")[before:]
    assert [(e.object_type, e.details["path"]) for e in entries] == [("console.departments", "/admin/departments/")]
