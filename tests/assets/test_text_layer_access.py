"""The text layer seen by people and systems: progress on the portal's file pages, each page's
text (escaped) on the detail page, the status poll, ``GET /api/v1/assets/<id>`` and
``GET /api/v1/assets/<id>/text`` — department-scoped (another department's id → 404) and
audited like a detail view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from assets.documents.jobs import RUNNER
from assets.documents.models import TextLayer
from compliance.models import AuditEntry
from departments.api_keys.services import api_key_create
from departments.tenancy import all_departments, department_scope
from tests.assets.test_text_layer import finished_layer
from tests.assets.text_layer_documents import born_digital_pdf

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_LINE = "<script>alert(1)</script> R&D 合同编号 HT-2024-007"


@pytest.fixture(autouse=True)
def text_workers(text_layer_worker, settings):
    settings.API_KEY_RATE_PER_MINUTE = 1000


@pytest.fixture
def contract(upload):
    data, _positions = born_digital_pdf(lines=(HOSTILE_LINE, "Payment within 30 days / 30日内付款"))
    asset = upload(data, "contract.pdf")
    finished_layer(asset)
    return asset


def api_client(department, user, scopes=("assets:read",)) -> APIClient:
    created = api_key_create(
        department=department,
        name="ERP",
        scopes=list(scopes),
        created_by=user,
        expires_at=timezone.now() + timedelta(days=30),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    return client


def test_the_detail_page_shows_each_pages_text_escaped(client, personas, contract):
    client.force_login(personas.member)
    url = reverse("assets:detail", args=[personas.department_a.slug, contract.pk])
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Text ready: 1 page (0 by OCR)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; R&amp;D 合同编号 HT-2024-007" in page
    assert "<script>alert(1)</script>" not in page
    assert "Payment within 30 days / 30日内付款" in page
    zh = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "文本已就绪：共 1 页（其中 0 页经 OCR 识别）" in zh and "第 1 页文本" in zh


def test_progress_is_shown_on_the_list_and_by_the_status_poll(client, personas, upload, settings):
    settings.TEXT_LAYER_WORKERS = 0  # the job stays where the test puts it
    data, _positions = born_digital_pdf()
    asset = upload(data, "invoice.pdf")
    with department_scope(asset.department_id):
        TextLayer.objects.filter(asset=asset).update(
            status="running", runner=RUNNER, pages_done=1, pages_total=2, heartbeat_at=timezone.now()
        )
    client.force_login(personas.member)
    listing = client.get(reverse("assets:list", args=[personas.department_a.slug]), HTTP_ACCEPT_LANGUAGE="en")
    html = listing.content.decode()
    assert f'data-text-layer="{asset.pk}" data-status="running"' in html
    assert "Reading text: page 1 of 2" in html
    poll = client.get(
        reverse("assets:text-status", args=[personas.department_a.slug]),
        {"id": [str(asset.pk), "not-a-uuid"]},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    status = poll.json()["files"][str(asset.pk)]
    assert (status["status"], status["pages_done"], status["pages_total"]) == ("running", 1, 2)
    assert status["label"] == "正在读取文本：第 1 页，共 2 页"
    # Another department's member learns nothing about the file through its own poll.
    client.force_login(personas.outsider)
    foreign = client.get(reverse("assets:text-status", args=[personas.department_b.slug]), {"id": str(asset.pk)})
    assert foreign.status_code == 200 and foreign.json() == {"files": {}}
    denial = AuditEntry.objects.filter(event_type="access.denied").latest("sequence")  # and it is recorded
    assert (denial.object_id, denial.details["reason"], denial.details["files"]) == (
        str(asset.pk),
        "file of another department",
        1,
    )
    assert client.get(reverse("assets:text-status", args=[personas.department_a.slug])).status_code == 404


def test_the_api_gives_the_status_and_the_pages_with_boxes(personas, contract):
    client = api_client(personas.department_a, personas.admin)
    detail = client.get(f"/api/v1/assets/{contract.pk}").json()
    assert detail["text_layer"]["status"] == "done"
    assert detail["text_layer"]["sources"]["pdf"] == 1 and detail["text_layer"]["failure"] is None
    response = client.get(f"/api/v1/assets/{contract.pk}/text")
    assert response.status_code == 200
    body = response.json()
    (page,) = body["pages"]
    assert (page["number"], page["source"], page["usable"], page["width"], page["height"]) == (
        1,
        "pdf",
        True,
        1131,
        1600,
    )
    first = page["lines"][0]
    assert first["text"] == HOSTILE_LINE and first["confidence"] == 1.0
    x0, y0, x1, y1 = first["box"]
    assert 0 < x0 < x1 < 1131 and 0 < y0 < y1 < 400
    with all_departments(reason="test reads the audit trail"):
        entry = AuditEntry.objects.filter(event_type="asset.view", object_id=str(contract.pk)).latest("pk")
    assert (entry.details["view"], entry.details["pages"]) == ("api.text", 1)


def test_another_departments_id_is_404_on_the_text_endpoint(personas, contract):
    outsider = api_client(personas.department_b, personas.outsider)
    response = outsider.get(f"/api/v1/assets/{contract.pk}/text")
    assert response.status_code == 404
    assert HOSTILE_LINE not in response.content.decode()
    with all_departments(reason="test reads the audit trail"):
        denial = AuditEntry.objects.filter(event_type="access.denied").latest("pk")
    assert denial.details.get("purpose") == "api.text"


def test_a_key_without_the_read_scope_is_refused(personas, contract):
    writer = api_client(personas.department_a, personas.admin, scopes=("chat",))
    assert writer.get(f"/api/v1/assets/{contract.pk}/text").status_code == 403
