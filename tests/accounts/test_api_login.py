"""The JSON sign-in (``POST /accounts/api/login/``) against hostile bodies: a clean 400, audited,
never a 500 (IP-2)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compliance.events import EventType
from compliance.models import AuditEntry
from tests.accounts.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

HOSTILE_BODIES = {
    "lone surrogate in the name": '{"username": "\\ud800", "password": "Wrong-pass-1"}',
    "lone surrogate in the password": '{"username": "bob", "password": "x\\udfff"}',
    "lone surrogate in the code": '{"username": "bob", "password": "Wrong-pass-1", "otp": "\\ud800"}',
    "NUL in the name": '{"username": "bob\\u0000", "password": "Wrong-pass-1"}',
    "deeply nested value": '{"username": ' + "[" * 5000 + "]" * 5000 + ', "password": "x"}',
    "deeply nested document": "[" * 100_000 + "]" * 100_000,
    "a list for the name": '{"username": ["bob"], "password": "Wrong-pass-1"}',
    "not an object": '"bob"',
    "not JSON": "username=bob",
    "not UTF-8": b'{"username": "\xff\xfe", "password": "x"}',
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_bodies_get_a_clean_400_and_an_audit_entry(client, personas, name):
    body = HOSTILE_BODIES[name]
    response = client.post(reverse("api-login"), body, content_type="application/json")
    assert response.status_code == 400 and response.json() == {"error": "invalid"}
    refusal = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).latest("sequence")
    assert refusal.details["reason"] == "malformed request"
    # Nothing was counted against anyone, and the endpoint still signs people in.
    response = client.post(
        reverse("api-login"), {"username": "bob", "password": TEST_PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 200
