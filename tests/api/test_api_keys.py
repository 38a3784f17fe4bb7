"""API key authentication: hashed storage, expiry, revocation, networks, lockout, throttling."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.models import AuditEntry
from departments.api_keys.authentication import (
    ADDRESS_LOCKED,
    KEY_CREATOR_UNENTITLED,
    KEY_EXPIRED,
    KEY_INVALID,
    KEY_MISSING,
    KEY_NETWORK_REFUSED,
    KEY_REVOKED,
)
from departments.api_keys.models import AUDIT_SCOPE_ONLY_FOR_AUDITOR, KEY_PREFIX, key_hash
from departments.api_keys.services import api_key_create, api_key_revoke
from departments.tenancy import all_departments

pytestmark = pytest.mark.django_db

ASSETS = "/api/v1/assets"


def test_the_key_is_stored_only_as_a_hash_with_a_recognisable_prefix(key_a):
    raw, key = key_a
    assert raw.startswith(KEY_PREFIX) and len(raw) > 40
    assert key.secret_hash == key_hash(raw) and raw not in key.secret_hash
    assert raw.startswith(key.prefix)
    with all_departments(reason="test"):
        row = type(key).objects.values().get(pk=key.pk)
    assert raw not in str(row)
    entry = AuditEntry.objects.filter(event_type="api_key.create").latest("sequence")
    assert raw not in str(entry.details) and entry.details["prefix"] == key.prefix


def test_a_valid_key_lists_files_and_names_itself_and_its_creator_in_the_trail(key_a, client_for):
    raw, key = key_a
    response = client_for(raw).get(ASSETS)
    assert response.status_code == 200, response.content
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    key.refresh_from_db()
    assert key.last_used_at is not None and key.last_used_ip == "127.0.0.1"
    assert key.audit_name == f"key:{key.prefix} (alice)"


@pytest.mark.parametrize(
    ("header", "message"),
    [(None, KEY_MISSING), ("Bearer mmk_not-a-real-key", KEY_INVALID), ("Bearer sk-foreign", KEY_INVALID)],
)
def test_missing_or_unknown_keys_answer_401(client_for, personas, header, message):
    client = client_for(None)
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(ASSETS)
    assert response.status_code == 401
    assert response.json()["detail"] == message
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_keys_are_audited_and_lock_the_source_address(client_for, personas, settings):
    client = client_for("mmk_guess-0000000000000000000000000000000")
    for _ in range(5):
        assert client.get(ASSETS).status_code == 401
    failures = [
        e for e in AuditEntry.objects.filter(event_type="auth.login_failed") if e.details.get("method") == "api_key"
    ]
    assert len(failures) == 5
    assert AuditEntry.objects.filter(event_type="auth.lockout").exists()
    # Locked: even a good key from the same address is refused now.
    raw = api_key_create(
        department=personas.department_a, name="x", scopes=["assets:read"], created_by=personas.admin
    ).raw_key
    response = client_for(raw).get(ASSETS)
    assert response.status_code == 401 and response.json()["detail"] == ADDRESS_LOCKED


def test_a_stale_key_behind_a_shared_address_does_not_lock_out_the_people_there(client_for, personas, client):
    """An ERP with an old key behind the office NAT: its failures lock API keys from that
    address, not interactive sign-in (the people behind the NAT use the same address)."""
    from django.urls import reverse

    stale = client_for("mmk_stale-000000000000000000000000000000000")
    for _ in range(6):
        assert stale.get(ASSETS).status_code == 401
    lockouts = AuditEntry.objects.filter(event_type="auth.lockout")
    assert [(e.details["kind"], e.details["key"]) for e in lockouts] == [("api_address", "127.0.0.1")]
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert denial.details["reason"] == "source address locked after failed API keys"
    response = client.post(reverse("login"), {"username": "bob", "password": "Correct-Horse-9"})
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_failed_sign_ins_from_an_address_do_not_lock_its_api_keys(client_for, personas, key_a, client):
    from django.urls import reverse

    for name in ["alice", "bob", "charlie", "nobody", "bob"]:
        client.post(reverse("login"), {"username": name, "password": "Wrong-pass-1"})
    locked = client.post(reverse("login"), {"username": "charlie", "password": "Correct-Horse-9"})
    assert locked.status_code == 200  # the address is locked for sign-in
    raw, _key = key_a
    assert client_for(raw).get(ASSETS).status_code == 200
    # A bad key from there is judged (and counted) in the API keys' own bucket.
    response = client_for("mmk_guess-1111111111111111111111111111111").get(ASSETS)
    assert response.status_code == 401 and response.json()["detail"] == KEY_INVALID
    failure = AuditEntry.objects.filter(event_type="auth.login_failed").latest("sequence")
    assert failure.details["method"] == "api_key" and failure.details["reason"] == "unknown key"


def test_expired_and_revoked_keys_are_refused(make_key, client_for, personas):
    raw, key = make_key()
    type(key)._base_manager.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(raw).get(ASSETS)
    assert response.status_code == 401 and response.json()["detail"] == KEY_EXPIRED
    raw2, key2 = make_key()
    assert client_for(raw2).get(ASSETS).status_code == 200
    api_key_revoke(key=key2, acting_user=personas.admin)
    response = client_for(raw2).get(ASSETS)
    assert response.status_code == 401 and response.json()["detail"] == KEY_REVOKED
    reasons = {e.details.get("reason") for e in AuditEntry.objects.filter(event_type="auth.login_failed")}
    assert {"expired key", "revoked key"} <= reasons
    assert AuditEntry.objects.filter(event_type="api_key.revoke", object_id=str(key2.pk)).exists()


def test_a_key_limited_to_other_networks_is_refused_and_audited(make_key, client_for):
    raw, key = make_key(allowed_networks=["10.20.0.0/16"])
    response = client_for(raw).get(ASSETS)  # the test client comes from 127.0.0.1
    assert response.status_code == 401 and response.json()["detail"] == KEY_NETWORK_REFUSED
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")
    assert denial.actor_type == "api_key" and denial.actor_name == key.audit_name
    raw_ok, _ = make_key(allowed_networks=["127.0.0.0/8"])
    assert client_for(raw_ok).get(ASSETS).status_code == 200


def test_throttling_per_key_answers_429_with_retry_after(make_key, client_for, settings, monkeypatch):
    from departments.api_keys import authentication

    settings.API_KEY_RATE_PER_MINUTE = 3
    raw, key = make_key()
    other, _ = make_key()
    client = client_for(raw)
    # The window is the clock minute: the throttle's clock stands 10 s into one, so no run straddles its end.
    minute = (time.time() // 60 + 1) * 60
    monkeypatch.setattr(authentication, "time", SimpleNamespace(time=lambda: minute + 10))
    statuses = [client.get(ASSETS).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client.get(ASSETS)
    assert response.status_code == 429 and int(response["Retry-After"]) == 50  # the rest of the minute
    assert client_for(other).get(ASSETS).status_code == 200  # per key, not global
    denials = [
        e
        for e in AuditEntry.objects.filter(event_type="access.denied")
        if e.details.get("reason") == "rate limit exceeded"
    ]
    assert len(denials) == 1  # one entry per key and minute, not one per refused call


def test_audit_scope_is_only_for_the_audit_administrator(personas, make_user, system_context):
    auditor = make_user("auditor", admin_role="audit")
    with pytest.raises(ValidationError) as error:
        api_key_create(department=personas.department_a, name="x", scopes=["audit:read"], created_by=personas.admin)
    assert str(AUDIT_SCOPE_ONLY_FOR_AUDITOR) in str(error.value)
    with pytest.raises(ValidationError):
        api_key_create(department=None, name="x", scopes=["audit:read", "chat"], created_by=auditor)
    created = api_key_create(department=None, name="SIEM", scopes=["audit:read"], created_by=auditor)
    assert created.key.is_audit_key and created.key.department is None


def test_a_key_stops_when_its_creator_loses_the_rights_it_was_issued_under(make_key, client_for, personas):
    from departments.models import Membership

    raw, _key = make_key()  # created by alice, department administrator of A
    assert client_for(raw).get("/api/v1/assets").status_code == 200
    Membership.objects.filter(user=personas.admin, department=personas.department_a).delete()
    refused = client_for(raw).get("/api/v1/assets")
    assert refused.status_code == 401
    assert refused.json()["detail"] == KEY_CREATOR_UNENTITLED
    assert any(
        "creator" in e.details.get("reason", "").lower() for e in AuditEntry.objects.filter(event_type="access.denied")
    )


def test_an_audit_key_stops_when_its_creator_is_disabled(personas, make_user, system_context, client_for):
    auditor = make_user("auditor", admin_role="audit")
    created = api_key_create(
        department=None,
        name="SIEM",
        scopes=["audit:read"],
        created_by=auditor,
        expires_at=timezone.now() + timedelta(days=1),
    )
    client = client_for(created.raw_key, REMOTE_ADDR="127.0.0.1")
    assert client.get("/api/v1/audit/entries").status_code == 200
    auditor.is_active = False
    auditor.save()
    assert client.get("/api/v1/audit/entries").status_code == 401
