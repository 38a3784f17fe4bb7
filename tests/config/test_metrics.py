import pytest
from django.test import override_settings

from compliance.events import EventType
from compliance.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_metrics_from_an_admin_network(client, personas):
    client.get("/healthz")
    client.post("/accounts/login/", {"username": "bob", "password": "wrong-password-1"})
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'platform_http_request_duration_seconds_count{method="GET",route="healthz",status="200"}' in text
    head = AuditEntry.objects.order_by("-sequence").first().sequence
    assert f"platform_audit_entries_written_total {float(head)}" in text
    failed = AuditEntry.objects.filter(event_type=EventType.LOGIN_FAILED).count()
    assert failed == 1
    assert "platform_logins_failed_total 1.0" in text


def test_metrics_hidden_from_other_networks(client, db):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404


@override_settings(METRICS_TOKEN="scrape-token-123")
def test_metrics_with_bearer_token_from_anywhere(client, db):
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-token-123")
    assert ok.status_code == 200
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 404


def test_json_log_lines_carry_the_request_id():
    import json
    import logging

    from compliance.context import RequestContext, request_context
    from config.logging_json import JsonFormatter

    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("world",), "tokens": 12}
    )
    with request_context(RequestContext(request_id="req-12345678")):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-12345678"
    assert line["extra"] == {"tokens": 12}
