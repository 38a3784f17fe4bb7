import pytest
from django.test import override_settings

from accounts.permissions import Action
from compliance.events import EventType
from compliance.models import AuditEntry
from config.metrics import metrics_view

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


def _denials():
    return AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED)


def test_metrics_refusal_is_recorded_once(client, db):
    before = _denials().count()
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    assert _denials().count() == before + 1
    denial = _denials().latest("sequence")
    assert denial.details["action"] == str(Action.METRICS)
    assert denial.details["reason"] == "neither the metrics token nor an administration network"
    assert denial.details["path"] == "/metrics"


@override_settings(METRICS_TOKEN="scrape-token-123")
def test_a_wrong_token_is_refused_even_from_an_admin_network(client, db):
    wrong = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 404


def test_a_signed_in_person_is_no_operator_outside_the_admin_networks(client, personas):
    client.force_login(personas.admin)
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    assert _denials().latest("sequence").actor_id == str(personas.admin.pk)


def test_metrics_is_the_policy_layers_operator_decision(settings):
    """The table grants /metrics to operators; ``decide`` answers it for a request."""
    from accounts.permissions import POLICY, decide

    settings.METRICS_TOKEN = "scrape-token-123"
    assert POLICY[Action.METRICS].operator
    assert metrics_view.policy_action == Action.METRICS

    def status(source_ip, token):
        decision = decide(None, Action.METRICS, source_ip=source_ip, check_network=True, operator_token=token)
        return decision.status

    assert status("127.0.0.1", None) == 200
    assert status("203.0.113.9", "scrape-token-123") == 200
    assert status("203.0.113.9", None) == 404
    assert status("127.0.0.1", "nope") == 404
    settings.METRICS_TOKEN = ""
    assert status("127.0.0.1", "anything") == 200  # no token configured: the network alone
    assert status("203.0.113.9", "anything") == 404


def test_readyz_details_follow_the_same_decision_and_record_nothing(client, db, settings):
    settings.METRICS_TOKEN = "scrape-token-123"
    before = _denials().count()
    outside = client.get("/readyz", REMOTE_ADDR="203.0.113.9")
    assert outside.status_code == 200 and outside.json() == {"status": "ready"}
    wrong = client.get("/readyz", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.json() == {"status": "ready"}
    assert "checks" in client.get("/readyz", REMOTE_ADDR="127.0.0.1").json()
    assert _denials().count() == before  # a load balancer's polling is no refusal


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
