"""The auditor console (/audit/) and the trail in the admin: audit administrator only, audited."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory

from compliance.checkpoints import checkpoint_sign
from compliance.events import EventType, Outcome
from compliance.models import AuditArchive, AuditChainHead, AuditEntry, RetentionPolicy
from compliance.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def security(make_user):
    return make_user("sam", admin_role="security")


@pytest.fixture
def trail(system_context, personas):
    audit_record(event_type=EventType.LOGIN_FAILED, outcome=Outcome.FAILURE, object_repr="mallory")
    audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_b, details={"phone": "13812345678"})
    head = AuditChainHead.objects.get()
    checkpoint_sign(sequence=head.sequence, hash=head.hash)
    return personas


def views_recorded() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW).order_by("sequence"))


def test_auditor_lists_filters_and_is_audited(client, auditor, trail):
    client.force_login(auditor)
    response = client.get("/audit/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "mallory" in body and "138****5678" in body and "13812345678" not in body
    assert "matches the database" in body or "与数据库一致" in body
    response = client.get("/audit/", {"event_type": EventType.ASSET_VIEW, "department": "quality"})
    entries = list(response.context["page"])
    assert entries and all(e.event_type == EventType.ASSET_VIEW and e.department_slug == "quality" for e in entries)
    recorded = views_recorded()[-1]
    assert recorded.actor_name == "audrey"
    assert recorded.details["filters"] == {"event_type": "asset.view", "department": "quality"}


def test_filter_by_request_id_and_outcome(client, auditor, trail):
    client.force_login(auditor)
    response = client.get("/audit/", {"request_id": "test-request-0001", "outcome": "failure"})
    entries = list(response.context["page"])
    assert [e.object_repr for e in entries] == ["mallory"]


def test_entry_detail_is_audited(client, auditor, trail):
    client.force_login(auditor)
    target = AuditEntry.objects.get(object_repr="mallory")
    response = client.get(f"/audit/entries/{target.sequence}/")
    assert response.status_code == 200 and target.hash in response.content.decode()
    assert views_recorded()[-1].object_id == str(target.sequence)
    assert client.get("/audit/entries/999999/").status_code == 404


@pytest.mark.parametrize("who", ["member", "admin", "security"])
def test_other_roles_are_refused_and_the_refusal_is_audited(client, trail, security, who):
    user = security if who == "security" else getattr(trail, who)
    client.force_login(user)
    assert client.get("/audit/").status_code == 403
    denied = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED).order_by("-sequence").first()
    assert denied.outcome == Outcome.DENIED and denied.actor_name == user.username
    assert not views_recorded()


def test_outside_the_admin_networks_the_console_does_not_exist(client, auditor, trail):
    client.force_login(auditor)
    assert client.get("/audit/", REMOTE_ADDR="203.0.113.9").status_code == 404


def test_anonymous_is_sent_to_login(client, trail):
    response = client.get("/audit/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_export_from_the_console_then_download_file_and_manifest(client, auditor, trail, settings):
    client.force_login(auditor)
    response = client.post("/audit/export/", {"format": "csv", "department": "quality"})
    assert response.status_code == 302 and response["Location"].endswith("/audit/archives/")
    archive = AuditArchive.objects.get()
    assert archive.actor_name == "audrey" and archive.complete is False
    assert client.get("/audit/archives/").status_code == 200
    download = client.get(f"/audit/archives/{archive.pk}/file/")
    assert download.status_code == 200 and b"quality" in b"".join(download.streaming_content)
    manifest = json.loads(b"".join(client.get(f"/audit/archives/{archive.pk}/manifest/").streaming_content))
    assert manifest["sha256"] == archive.sha256
    exports = AuditEntry.objects.filter(event_type=EventType.AUDIT_EXPORT).order_by("sequence")
    assert [e.details.get("action", "create") for e in exports] == ["create", "download", "download"]
    assert client.get(f"/audit/archives/{archive.pk}/other/").status_code == 404


def _admin_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_admin_shows_the_trail_read_only_to_the_auditor_only(trail, auditor, security):
    entry_admin = site._registry[AuditEntry]
    for model in (AuditEntry, AuditArchive):
        model_admin = site._registry[model]
        for user in (auditor, security, trail.admin):
            request = _admin_request(user)
            assert model_admin.has_view_permission(request) is (user is auditor)
            assert not model_admin.has_add_permission(request)
            assert not model_admin.has_change_permission(request)
            assert not model_admin.has_delete_permission(request)
    assert entry_admin.get_actions(_admin_request(auditor)) == {}


def test_retention_policy_admin_is_the_security_administrators_and_audited(trail, auditor, security):
    policy_admin = site._registry[RetentionPolicy]
    assert policy_admin.has_change_permission(_admin_request(security))
    assert not policy_admin.has_view_permission(_admin_request(auditor))
    form_class = policy_admin.get_form(_admin_request(security))
    form = form_class(data={"department": trail.department_a.pk, "file_days": 90, "conversation_days": ""})
    from departments.tenancy import all_departments

    with all_departments(reason="test: what changeform_view opens"):
        assert form.is_valid(), form.errors
        policy_admin.save_model(_admin_request(security), form.save(commit=False), form, change=False)
    entry = AuditEntry.objects.filter(event_type=EventType.RETENTION_POLICY_CHANGE).get()
    assert entry.details["after"]["file_days"] == 90 and entry.department_slug == "finance"
