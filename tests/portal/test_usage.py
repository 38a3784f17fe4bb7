"""Usage pages: requests and tokens per department and person, by day, from the ``inference.call``
entries of every channel. Three personas plus the system administrator: the department
administrator sees exactly their department's figures and never another's, a member is refused
(403), an outsider sees no department (404), the system administrator sees every department; the
CSV holds the same figures with formula cells neutralised; each view and export is audited with
what it covered, never a figure or a name of a person."""

from __future__ import annotations

import csv
import io
import ipaddress
from datetime import datetime, time, timedelta

import pytest
from django.test import Client
from django.utils import timezone, translation

import compliance.services
from accounts.roles import AdminRole
from compliance.events import EventType, Outcome
from compliance.export import csv_cell_value
from compliance.models import AuditEntry
from departments.services import membership_add
from inference.chat.services import conversation_turn_record, inference_refusal_record
from inference.model_calls import Channel, ModelCall, ModelCallResult, PromptMessage, model_call_record
from inference.usage.export import CSV_COLUMNS
from inference.usage.forms import DAY_OUT_OF_RANGE, END_BEFORE_START, MAX_DAYS, RANGE_TOO_LONG
from tests.accounts.conftest import sign_in_with_totp

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "the secret question about invoice 4711"


class _Clock:
    """Stands in for django.utils.timezone in compliance.services: entries get this time."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def _call(prompt: str = SECRET_PROMPT, channel: Channel = Channel.WEBSOCKET) -> ModelCall:
    return ModelCall(
        channel=channel,
        model="demo",
        model_sha256="0" * 64,
        prompt=(PromptMessage("user", prompt),),
        preview=prompt,
        stream=channel == Channel.WEBSOCKET,
    )


@pytest.fixture
def days():
    today = timezone.localdate()
    return today - timedelta(days=3), today - timedelta(days=2)


@pytest.fixture
def calls(personas, make_user, monkeypatch, system_context, days):
    """Model calls of two departments, two people of finance and one of quality, on two days.

    Local times near midnight check that a day is the platform's day (Asia/Shanghai in these
    tests: 00:30 there is 16:30 UTC of the day before)."""
    zone = timezone.get_current_timezone()
    day1, day2 = days
    eve = make_user("@eve")  # a name a spreadsheet would run as a formula
    membership_add(user=eve, department=personas.department_a, acting_user="system")

    def at(day, hour, minute=0):
        monkeypatch.setattr(compliance.services, "timezone", _Clock(datetime.combine(day, time(hour, minute), zone)))

    def turn(user, department, prompt_tokens, completion_tokens, status="complete"):
        conversation_turn_record(
            conversation=None,
            department=department,
            user=user,
            prompt=SECRET_PROMPT,
            assets=[],
            answer="the secret answer",
            status=status,
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            finish_reason="stop" if status == "complete" else "error",
            params={},
            model="demo",
            call=_call(),
        )

    finance, quality = personas.department_a, personas.department_b
    at(day1, 0, 30)
    turn(personas.member, finance, 10, 5)
    at(day1, 9)
    turn(personas.member, finance, 20, 7)
    turn(personas.admin, finance, 3, 1)
    turn(personas.outsider, quality, 1000, 900)  # never on finance's page
    at(day2, 23, 30)
    turn(personas.member, finance, 4, 0, status="failed")
    inference_refusal_record(department=finance, user=eve, reason="rate_limited", call=_call())  # no tokens
    turn(eve, finance, 6, 2)
    turn(personas.outsider, quality, 100, 90)
    at(day2 + timedelta(days=1), 0, 10)  # the day after the range: left out
    turn(personas.member, finance, 7777, 7777)
    monkeypatch.undo()
    return {
        # (day, person) → (requests, failed, prompt, completion)
        "finance": {
            (day1, "bob"): (2, 0, 30, 12),
            (day1, "alice"): (1, 0, 3, 1),
            (day2, "bob"): (1, 1, 4, 0),
            (day2, "@eve"): (2, 1, 6, 2),
        },
        "quality": {(day1, "charlie"): (1, 0, 1000, 900), (day2, "charlie"): (1, 0, 100, 90)},
    }


def _range(days) -> dict[str, str]:
    return {"start": days[0].isoformat(), "end": days[1].isoformat()}


def _table(summary) -> dict:
    return {
        (row.day, row.actor_name): (
            row.figures.requests,
            row.figures.failed,
            row.figures.prompt_tokens,
            row.figures.completion_tokens,
        )
        for row in summary.rows
    }


@pytest.fixture
def system_admin(make_admin, settings) -> Client:
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    user, device = make_admin(AdminRole.SYSTEM)
    client = Client()
    sign_in_with_totp(client, user, device)
    return client


def test_department_administrator_sees_exactly_the_departments_figures(client, personas, calls, days):
    client.force_login(personas.admin)
    response = client.get("/d/finance/usage/", _range(days))
    assert response.status_code == 200
    summary = response.context["summary"]
    assert _table(summary) == calls["finance"]
    assert {row.department_slug for row in summary.rows} == {"finance"}
    assert (summary.total.requests, summary.total.failed) == (6, 2)
    assert (summary.total.prompt_tokens, summary.total.completion_tokens) == (43, 15)
    by_day = dict(summary.by_day)
    assert [by_day[day].total_tokens for day in days] == [46, 12]
    by_actor = {total.actor_name: total.figures for total in summary.by_actor}
    assert (by_actor["bob"].requests, by_actor["bob"].prompt_tokens, by_actor["bob"].completion_tokens) == (3, 34, 12)
    page = response.content.decode()
    # Another department's figures and people never appear; neither does any content.
    assert "charlie" not in page and "1000" not in page and "quality" not in page
    assert "secret" not in page
    assert 'id="total-prompt">43<' in page and 'id="total-completion">15<' in page
    assert page.count('class="usage-bar"') == 2  # one bar per day of the range


def test_members_are_refused_and_outsiders_see_no_department(client, personas, calls):
    client.force_login(personas.member)
    assert client.get("/d/finance/usage/").status_code == 403
    assert client.get("/d/finance/usage/export.csv").status_code == 403
    assert client.get("/usage/").status_code in {403, 404}  # an administration page: never for a member
    client.force_login(personas.outsider)  # administers nothing, and is no member of finance
    assert client.get("/d/finance/usage/").status_code == 404
    client.force_login(personas.admin)  # a department administrator is no system administrator
    assert client.get("/usage/", REMOTE_ADDR="127.0.0.1").status_code in {403, 404}
    assert not AuditEntry.objects.filter(event_type__in=[EventType.USAGE_VIEW, EventType.USAGE_EXPORT]).exists()
    denied = AuditEntry.objects.filter(event_type=EventType.ACCESS_DENIED, details__contains="usage")
    assert denied.count() >= 3


def test_the_system_administrator_sees_every_department(system_admin, calls, days):
    response = system_admin.get("/usage/", _range(days))
    assert response.status_code == 200
    summary = response.context["summary"]
    expected = {**calls["finance"], **calls["quality"]}
    assert _table(summary) == expected
    by_department = {total.department_slug: total.figures for total in summary.by_department}
    assert (by_department["quality"].requests, by_department["quality"].total_tokens) == (2, 2090)
    assert (by_department["finance"].requests, by_department["finance"].total_tokens) == (6, 58)
    # One department at a time, too.
    only = system_admin.get("/usage/", {**_range(days), "department": "quality"}).context["summary"]
    assert _table(only) == calls["quality"]
    unknown = system_admin.get("/usage/", {**_range(days), "department": "nope"})
    assert unknown.status_code == 400 and unknown.context["summary"] is None


def test_api_key_calls_are_counted_under_the_key(system_admin, personas, days, monkeypatch, system_context):
    from departments.api_keys.services import api_key_create

    created = api_key_create(
        department=personas.department_a, name="erp", scopes=["chat"], created_by=personas.admin, expires_at=None
    )
    zone = timezone.get_current_timezone()
    monkeypatch.setattr(compliance.services, "timezone", _Clock(datetime.combine(days[0], time(12), zone)))
    from django.db import transaction

    with transaction.atomic():
        model_call_record(
            _call(channel=Channel.V1),
            ModelCallResult(outcome=Outcome.SUCCESS, latency_ms=5.0, prompt_tokens=11, completion_tokens=4),
            actor=created.key,
            department=personas.department_a,
        )
    monkeypatch.undo()
    summary = system_admin.get("/usage/", _range(days)).context["summary"]
    (total,) = summary.by_actor
    assert total.is_api_key and (total.figures.requests, total.figures.total_tokens) == (1, 15)


def test_csv_holds_the_page_figures_with_formula_cells_neutralised(client, personas, calls, days):
    client.force_login(personas.admin)
    response = client.get("/d/finance/usage/export.csv", _range(days))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Cache-Control"] == "private, no-store"
    assert response["Content-Disposition"].startswith('attachment; filename="usage-finance-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    records = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    table = {
        (datetime.fromisoformat(r["date"]).date(), csv_cell_value(r["actor"])): (
            int(r["requests"]),
            int(r["failed"]),
            int(r["prompt_tokens"]),
            int(r["completion_tokens"]),
        )
        for r in records
    }
    assert table == calls["finance"]
    assert {r["department"] for r in records} == {"finance"}
    assert {r["time_zone"] for r in records} == {str(timezone.get_current_timezone())}
    assert "'@eve" in {r["actor"] for r in records}  # a formula-looking name is text in a spreadsheet
    assert all(int(r["total_tokens"]) == int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in records)


def test_views_and_exports_are_audited_without_figures_or_content(client, personas, calls, days):
    client.force_login(personas.admin)
    client.get("/d/finance/usage/", _range(days))
    client.get("/d/finance/usage/export.csv", _range(days))
    view = AuditEntry.objects.filter(event_type=EventType.USAGE_VIEW).latest("sequence")
    export = AuditEntry.objects.filter(event_type=EventType.USAGE_EXPORT).latest("sequence")
    for entry in (view, export):
        assert entry.actor_name == "alice" and entry.department_slug == "finance"
        assert entry.details == {
            "department": "finance",
            "from": days[0].isoformat(),
            "to": days[1].isoformat(),
            "time_zone": str(timezone.get_current_timezone()),
        }
        text = str(entry.details) + entry.object_repr
        assert "bob" not in text and "secret" not in text


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"start": "2026-13-01"}, "start", None),
        ({"start": "2026-03-02", "end": "2026-03-01"}, "end", END_BEFORE_START),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "end", RANGE_TOO_LONG),
        # Near date's limits a range's arithmetic overflowed: a 500 before.
        ({"start": "9999-12-31"}, "start", DAY_OUT_OF_RANGE),
        ({"start": "2026-01-01", "end": "0001-01-05"}, "end", DAY_OUT_OF_RANGE),
    ],
)
def test_a_bad_range_is_shown_with_its_error_and_the_input_kept(client, personas, query, field, message):
    client.force_login(personas.admin)
    client.cookies["django_language"] = "en"
    for path in ("/d/finance/usage/", "/d/finance/usage/export.csv"):
        response = client.get(path, query)
        assert response.status_code == 400 and "text/html" in response["Content-Type"]
        form = response.context["form"]
        assert field in form.errors
        if message:
            with translation.override("en"):
                params = {"days": MAX_DAYS, "first": "1970-01-01", "last": "9000-12-31"}
                assert str(message) % params in form.errors[field]
        page = response.content.decode()
        assert f'id="{field}-errors"' in page
        assert f'value="{query["start"]}"' in page  # what was typed is still there
    entry = AuditEntry.objects.filter(event_type=EventType.USAGE_VIEW).latest("sequence")
    assert entry.details["filters_invalid"] == [field]
    assert not AuditEntry.objects.filter(event_type=EventType.USAGE_EXPORT).exists()


def test_the_default_range_is_the_last_thirty_days_in_the_platforms_zone(client, personas):
    client.force_login(personas.admin)
    response = client.get("/d/finance/usage/")
    assert response.status_code == 200
    period = response.context["summary"].period
    today = timezone.localdate()
    assert (period.start, period.end) == (today - timedelta(days=29), today)
    page = response.content.decode()
    assert str(timezone.get_current_timezone()) in page
    assert f'value="{period.start.isoformat()}"' in page and f'value="{today.isoformat()}"' in page


def test_the_navigation_links_the_usage_pages(client, personas, system_admin):
    client.force_login(personas.admin)
    assert 'data-nav="usage"' in client.get("/d/finance/").content.decode()
    client.force_login(personas.member)
    assert 'data-nav="usage"' not in client.get("/d/finance/").content.decode()
    assert 'href="/usage/" data-nav="usage"' in system_admin.get("/d/").content.decode()


@pytest.mark.parametrize(("language", "heading"), [("zh-hans", "用量"), ("en", "Usage")])
def test_the_page_speaks_the_readers_language(client, personas, calls, days, language, heading):
    client.force_login(personas.admin)
    client.cookies["django_language"] = language
    page = client.get("/d/finance/usage/", _range(days)).content.decode()
    assert f"<h1>{heading}</h1>" in page
