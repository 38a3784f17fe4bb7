"""Department administrators manage their department's keys in the portal; the key shows once."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

from compliance.models import AuditEntry
from departments.api_keys.models import ApiKey, key_hash
from departments.tenancy import department_scope

pytestmark = pytest.mark.django_db


def test_the_department_admin_creates_sees_once_and_revokes_a_key(client, personas, client_for):
    client.force_login(personas.admin)
    page = client.post(
        "/d/finance/api-keys/",
        {"name": "OA", "scopes": ["chat", "extract"], "days": 30, "allowed_networks": "127.0.0.0/8"},
    )
    assert page.status_code == 200
    raw = re.search(r'id="new-key-value">(mmk_[^<]+)<', page.content.decode()).group(1)
    with department_scope(personas.department_a):
        key = ApiKey.objects.get(secret_hash=key_hash(raw))
    assert key.scopes == ["chat", "extract"] and key.created_by == personas.admin
    assert raw not in client.get("/d/finance/api-keys/").content.decode()  # shown once
    assert client_for(raw).get("/api/v1/templates").status_code == 200
    client.post(f"/d/finance/api-keys/{key.pk}/revoke/")
    assert client_for(raw).get("/api/v1/templates").status_code == 401
    assert AuditEntry.objects.filter(event_type="api_key.revoke", actor_name="alice").exists()


def test_members_and_outsiders_cannot_manage_keys(client, personas):
    client.force_login(personas.member)
    assert client.get("/d/finance/api-keys/").status_code == 403
    client.force_login(personas.outsider)
    assert client.get("/d/finance/api-keys/").status_code == 404


def test_the_command_prints_a_working_audit_key(make_user, client_for, capsys):
    make_user("auditor", admin_role="audit")
    call_command("api_key_create", "--audit", "--owner", "auditor", "--name", "SIEM")
    raw = capsys.readouterr().out.strip()
    assert client_for(raw).get("/api/v1/audit/entries").status_code == 200


def test_revoking_another_departments_key_answers_404_and_is_audited(client, personas, make_key):
    _raw, foreign = make_key(personas.department_b, created_by=personas.outsider)
    client.force_login(personas.admin)
    assert client.post(f"/d/finance/api-keys/{foreign.pk}/revoke/").status_code == 404
    denial = AuditEntry.objects.filter(event_type="access.denied", object_id=str(foreign.pk)).get()
    assert denial.details["reason"] == "no such API key in this department"
    assert denial.department_slug == "finance"
    with department_scope(personas.department_b):
        assert ApiKey.objects.get(pk=foreign.pk).revoked_at is None
