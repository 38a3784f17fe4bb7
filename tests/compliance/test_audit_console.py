"""The auditor console as a working tool: times and their zone, keyset pages and
their size, filter errors in both languages, pretty-printed details."""

from __future__ import annotations

import json
import re
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.events import EventType
from compliance.models import AuditEntry
from compliance.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def entries(system_context, personas):
    """Thirty more entries after the personas' own."""
    for index in range(30):
        audit_record(event_type=EventType.ASSET_VIEW, department=personas.department_a, details={"index": index})
    return list(AuditEntry.objects.order_by("-sequence").values_list("sequence", flat=True))


def test_the_utc_column_shows_utc_and_the_detail_both_times_with_their_zone(client, auditor, entries, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    client.force_login(auditor)
    entry = AuditEntry.objects.get(sequence=entries[0])
    utc = entry.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    shanghai = entry.timestamp.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    body = client.get("/audit/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Time (UTC)" in body
    assert utc in body and shanghai not in body
    detail = client.get(f"/audit/entries/{entry.sequence}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"{utc}." in detail and "UTC" in detail
    assert shanghai in detail and "Local time (Asia/Shanghai)" in detail and "+0800" in detail


def test_a_time_filter_without_a_zone_is_read_as_utc(client, auditor, entries):
    client.force_login(auditor)
    newest = AuditEntry.objects.get(sequence=entries[0])
    since = newest.timestamp.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    response = client.get("/audit/", {"since": since.isoformat(timespec="seconds")})
    assert newest.sequence in [entry.sequence for entry in response.context["page"]]


def newest_first() -> list[int]:
    return list(AuditEntry.objects.order_by("-sequence").values_list("sequence", flat=True))


def test_keyset_pages_of_the_chosen_size_without_offset(client, auditor, entries):
    client.force_login(auditor)
    entries = newest_first()  # the sign-in is an entry too
    with CaptureQueriesContext(connection) as queries:
        first = client.get("/audit/", {"size": "25"})
    assert not [q["sql"] for q in queries.captured_queries if "OFFSET" in q["sql"].upper()]
    page = first.context["page"]
    listed = [entry.sequence for entry in page]
    assert listed == entries[:25]  # newest first
    assert page.older == listed[-1] and page.newer is None
    assert f"before={page.older}" in first.content.decode() and "size=25" in first.content.decode()
    with CaptureQueriesContext(connection) as queries:
        second = client.get("/audit/", {"size": "25", "before": page.older})
    assert not [q["sql"] for q in queries.captured_queries if "OFFSET" in q["sql"].upper()]
    # The request's own audit.view entries are newer than the first page: the older page goes on
    # exactly where the first one ended.
    older = [entry.sequence for entry in second.context["page"]]
    assert older == entries[25:50]
    assert second.context["page"].newer is not None
    back = client.get("/audit/", {"size": "25", "before": second.context["page"].newer or ""})
    assert [entry.sequence for entry in back.context["page"]][-1] == listed[-1]
    # Every size offered lists that many; one not offered is an error, not a silent default.
    before_request = AuditEntry.objects.count()
    assert len(client.get("/audit/", {"size": "100"}).context["page"]) == min(100, before_request)
    assert len(client.get("/audit/", {"size": "200"}).context["page"]) == min(200, before_request + 1)
    refused = client.get("/audit/", {"size": "7"}, HTTP_ACCEPT_LANGUAGE="en")
    assert refused.context["page"] is None and "Select a valid choice" in refused.content.decode()


def test_the_table_is_fixed_and_long_details_are_cut_with_a_link_to_the_entry(client, auditor, system_context):
    audit_record(event_type=EventType.ASSET_VIEW, details={"long": "x" * 500})
    entry = AuditEntry.objects.order_by("-sequence").first()
    client.force_login(auditor)
    body = client.get("/audit/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "compliance/console.css" in body and 'class="audit-table"' in body
    assert "x" * 500 not in body
    row = body[body.index(f'href="/audit/entries/{entry.sequence}/"') :]
    assert row.count(f'href="/audit/entries/{entry.sequence}/"') >= 2  # the number and the details
    # Labels, not codes, in the event type and outcome cells (Chinese here).
    assert "文件查看" in body or str(EventType.ASSET_VIEW.label) in body
    assert re.search(r"<td class=\"cut\">成功</td>", body)


@pytest.mark.parametrize(
    ("language", "invalid", "order"),
    [
        ("en", "Enter a valid date/time.", "The end of the range must come after its start."),
        ("zh-hans", "输入一个有效的日期/时间。", "时间范围的结束必须晚于开始。"),
    ],
)
def test_filter_errors_are_shown_next_to_their_field(client, auditor, entries, language, invalid, order):
    client.force_login(auditor)
    response = client.get("/audit/", {"since": "2026-13-45 99:00"}, HTTP_ACCEPT_LANGUAGE=language)
    body = response.content.decode()
    assert response.status_code == 200 and response.context["page"] is None
    label = body.index('name="since"')
    assert invalid in body[label : label + 600]
    assert "field-error" in body
    response = client.get(
        "/audit/", {"since": "2026-05-02T10:00", "until": "2026-05-01T10:00"}, HTTP_ACCEPT_LANGUAGE=language
    )
    assert order in response.content.decode() and response.context["page"] is None
    recorded = AuditEntry.objects.filter(event_type=EventType.AUDIT_VIEW).order_by("-sequence").first()
    assert recorded.details == {"filters_invalid": ["until"]}


def test_details_are_pretty_printed_json_with_previews_opened(client, auditor, system_context, personas):
    audit_record(
        event_type=EventType.ASSET_VIEW,
        department=personas.department_a,
        details={"name": "发票.pdf", "pages": [1, 2], "nested": {"ok": True, "none": None}},
    )
    entry = AuditEntry.objects.order_by("-sequence").first()
    client.force_login(auditor)
    response = client.get(f"/audit/entries/{entry.sequence}/")
    body = response.content.decode()
    shown = response.context["details_json"]
    assert json.loads(shown) == entry.details
    assert '\n  "nested": {\n    "none": null,\n    "ok": true\n  }' in shown
    assert "发票.pdf" in shown and "True" not in shown and "None" not in shown and "{'" not in shown
    assert '<pre class="details-json">' in body and "&quot;pages&quot;: [" in body
