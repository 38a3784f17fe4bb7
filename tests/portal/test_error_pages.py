"""The error pages: styled, in the reader's language, with navigation and the reason of an
ordinary refusal as the policy layer words it; and no traceback logged for such a refusal."""

from __future__ import annotations

import logging
import sys

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts import permissions
from accounts.admin_site import ADMIN_TWO_FACTOR_REFUSED
from accounts.two_factor import TWO_FACTOR_REQUIRED_FOR_ADMINS
from config.error_pages import FORBIDDEN_REASONS, NOT_FOUND_REASONS, server_error

pytestmark = pytest.mark.django_db

ROLE_REASON = {
    "zh-hans": "此操作需要部门管理员角色。",
    "en": "This needs the department administrator role.",
}
DEPARTMENT_REASON = {
    "zh-hans": "该部门不存在，或您不是其成员。",
    "en": "No such department, or you are not a member of it.",
}
HEADINGS = {
    403: {"zh-hans": "您无权执行此操作", "en": "You may not do this"},
    404: {"zh-hans": "页面不存在", "en": "Page not found"},
    400: {"zh-hans": "无法理解该请求", "en": "The request could not be understood"},
    500: {"zh-hans": "服务器端出现错误", "en": "Something went wrong on our side"},
}
LANGUAGES = ["zh-hans", "en"]


def in_language(client, language: str):
    client.cookies["django_language"] = language
    return client


def test_the_shown_reasons_are_the_policy_layers_own_texts():
    assert {
        permissions.ADMIN_ROLE_REFUSED,
        permissions.DEPARTMENT_ROLE_REFUSED,
        permissions.OWNER_REFUSED,
        permissions.SWITCH_REFUSED,
        permissions.NOT_FOR_API_KEYS,
        permissions.API_KEYS_ONLY,
        permissions.ADMINISTRATOR_HOLDS_NO_DEPARTMENT_ACCESS,
        ADMIN_TWO_FACTOR_REFUSED,
        TWO_FACTOR_REQUIRED_FOR_ADMINS,
    } == FORBIDDEN_REASONS
    assert {permissions.DEPARTMENT_REFUSED, permissions.OBJECT_REFUSED} == NOT_FOUND_REASONS
    # From outside the admin networks an administration route must look absent: never explained.
    assert permissions.ADMIN_NETWORK_REFUSED not in NOT_FOUND_REASONS | FORBIDDEN_REASONS
    for reason in FORBIDDEN_REASONS | NOT_FOUND_REASONS:
        with translation.override("zh-hans"):
            assert translation.gettext(reason) != reason, f"no Chinese for {reason!r}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_refusal_by_role_explains_itself_in_the_readers_language(client, personas, caplog, language):
    client.force_login(personas.member)
    in_language(client, language)
    with caplog.at_level(logging.WARNING):
        response = client.get(reverse("departments:api_keys", args=["finance"]))
    assert response.status_code == 403
    content = response.content.decode()
    assert response.templates[0].name == "403.html"
    assert f'<html lang="{language}">' in content
    assert HEADINGS[403][language] in content
    assert f'<p class="reason" id="error-reason">{ROLE_REASON[language]}</p>' in content
    assert 'class="user-menu"' in content and 'data-nav="error-home"' in content  # navigation
    refused = [record for record in caplog.records if record.name == "django.request"]
    assert [record.status_code for record in refused] == [403]
    assert all(record.exc_info is None for record in refused)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_unknown_department_answers_a_styled_404_with_its_reason(client, personas, caplog, language):
    client.force_login(personas.member)
    in_language(client, language)
    with caplog.at_level(logging.WARNING):
        response = client.get("/d/quality/")  # another department's: alike an unknown one
    assert response.status_code == 404
    content = response.content.decode()
    assert HEADINGS[404][language] in content
    assert DEPARTMENT_REASON[language] in content
    assert 'data-nav="home"' in content and 'data-nav="error-home"' in content
    assert "Traceback" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records if record.name == "django.request")


def test_the_404_page_is_the_same_for_whoever_asks_wherever(client, personas):
    """Nothing of the person or the address: an unknown department and another's read alike."""
    client.force_login(personas.member)
    unknown = client.get("/d/no-such-department/")
    client.force_login(personas.outsider)
    foreign = client.get("/d/finance/")
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.content == foreign.content
    assert b"csrfmiddlewaretoken" not in unknown.content


def test_signed_out_visitor_gets_the_404_without_djangos_own_text(client, personas):
    in_language(client, "en")
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    content = response.content.decode()
    assert HEADINGS[404]["en"] in content and 'data-nav="error-home"' in content
    assert 'id="error-reason"' not in content  # Django's own text is never shown


def test_console_from_outside_the_admin_networks_looks_absent(client, personas):
    in_language(client, "en")
    response = client.get(reverse("admin:index"), REMOTE_ADDR="10.9.8.7")
    assert response.status_code == 404
    content = response.content.decode()
    assert HEADINGS[404]["en"] in content
    assert "network" not in content and 'id="error-reason"' not in content


@pytest.mark.parametrize("language", LANGUAGES)
def test_bad_request_page(client, language, settings):
    in_language(client, language)
    response = client.get("/", HTTP_HOST="bad host name")  # DisallowedHost: 400
    assert response.status_code == 400
    content = response.content.decode()
    assert HEADINGS[400][language] in content and 'data-nav="error-home"' in content


@pytest.mark.parametrize("language", LANGUAGES)
def test_server_error_page_reads_neither_session_nor_database(rf, language, django_assert_num_queries):
    request = rf.get("/d/finance/")
    with translation.override(language), django_assert_num_queries(0):
        response = server_error(request)
    assert response.status_code == 500
    content = response.content.decode()
    assert HEADINGS[500][language] in content and 'data-nav="error-home"' in content


@pytest.mark.parametrize("language", LANGUAGES)
def test_csrf_failure_page(personas, language):
    client = Client(enforce_csrf_checks=True)
    in_language(client, language)
    response = client.post(reverse("login"), {"username": "bob", "password": "Correct-Horse-9"})
    assert response.status_code == 403
    expected = {"zh-hans": "表单已失效", "en": "The form expired"}[language]
    assert expected in response.content.decode()


def test_a_real_failure_keeps_its_traceback(caplog):
    logger = logging.getLogger("django.request")
    try:
        raise RuntimeError("a real bug")
    except RuntimeError:
        with caplog.at_level(logging.ERROR):
            logger.error("Internal Server Error: /x/", exc_info=sys.exc_info())
    assert caplog.records[-1].exc_info is not None
    assert "Traceback" in caplog.text


@pytest.mark.parametrize(
    ("status", "handler"),
    [(400, "bad_request"), (403, "permission_denied"), (404, "page_not_found"), (500, "server_error")],
)
def test_the_handlers_are_wired(status, handler):
    from django.urls import get_resolver

    from config import error_pages

    assert get_resolver().resolve_error_handler(status) is getattr(error_pages, handler)


def test_administrator_of_another_role_reads_why_in_chinese(client, make_admin):
    from tests.accounts.conftest import sign_in_with_totp

    user, device = make_admin("system")
    sign_in_with_totp(client, user, device)
    response = client.get(reverse("compliance:entry_list"))  # the audit administrator's console
    assert response.status_code == 403
    content = response.content.decode()
    assert "此页面属于其他管理员角色。" in content and HEADINGS[403]["zh-hans"] in content
    assert 'data-nav="console"' in content  # the menu still offers the console this role may open
