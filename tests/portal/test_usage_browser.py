"""The usage pages and the console's portal menu in a real browser (Debian's Chromium, headless,
through the playwright package) at phone width (390 px), in both languages: the chart is drawn,
the long names of the tables wrap, and no page scrolls sideways. Screenshots go to the test's
temporary directory."""

from __future__ import annotations

import json
from functools import partial

import pytest

from tests.portal.test_roles_browser import PASSWORD, totp_code
from tests.support.browser import assert_no_sideways_scroll, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
LONG_NAME = "a.member.with.a.remarkably.long.directory.name@finance-department.example"

SET_UP = f"""
import json
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from accounts.models import User
from accounts.roles import MembershipRole
from departments.services import department_create, membership_add
from inference.chat.services import conversation_turn_record
from inference.model_calls import Channel, ModelCall, PromptMessage
finance = department_create(slug="finance", name="财务部 Finance", acting_user="system")
people = {{}}
for username, role in [("dora", ""), ({LONG_NAME!r}, ""), ("sam", "system")]:
    user = User(username=username, admin_role=role, password_changed_at=timezone.now())
    user.set_password({PASSWORD!r})
    user.save()
    people[username] = user
membership_add(user=people["dora"], department=finance, role=MembershipRole.ADMIN, acting_user="system")
membership_add(user=people[{LONG_NAME!r}], department=finance, acting_user="system")
for username, tokens in [("dora", 120), ({LONG_NAME!r}, 45678)]:
    conversation_turn_record(
        conversation=None, department=finance, user=people[username], prompt="q", assets=[], answer="a",
        status="complete", usage={{"prompt_tokens": tokens, "completion_tokens": tokens // 3}},
        finish_reason="stop", params={{}}, model="demo",
        call=ModelCall(channel=Channel.WEBSOCKET, model="demo", model_sha256="0" * 64,
                       prompt=(PromptMessage("user", "q"),), preview="q", stream=True),
    )
print(json.dumps({{"sam": TOTPDevice.objects.create(user=people["sam"], name="authenticator", confirmed=True).key}}))
"""


def test_usage_pages_and_the_console_fit_a_phone(live_server_factory, shots):
    sync_api = browser_api()
    server = live_server_factory()
    keys = json.loads(server.shell(SET_UP))

    with chromium(sync_api) as browser:
        for username, path in (("dora", "/d/finance/usage/"), ("sam", "/usage/")):
            context = browser.new_context(locale="zh-CN", viewport=PHONE)
            page = context.new_page()
            code = partial(totp_code, keys[username]) if username in keys else None
            sign_in(page, server.base_url, username, PASSWORD, code=code)
            for language in ("zh-hans", "en"):
                context.add_cookies([{"name": "django_language", "value": language, "url": server.base_url}])
                page.goto(f"{server.base_url}{path}")
                assert page.evaluate("() => document.documentElement.lang") == language
                assert page.inner_text("#total-requests").strip() == "2"
                assert page.locator("#usage-chart .bar-prompt").count() == 1  # today's bar
                assert page.is_visible("#usage-chart") and page.is_visible("#usage-csv")
                assert LONG_NAME in page.inner_text("#usage-people")
                assert_no_sideways_scroll(page, f"{path} at 390 px in {language}")
                page.screenshot(path=str(shots / f"usage-{username}-{language}.png"), full_page=True)
            if username == "sam":  # the console, with the portal's menu, on a phone
                page.goto(f"{server.base_url}/admin/")
                page.click("#user-menu > summary")
                page.wait_for_selector("#user-menu .user-menu-panel", state="visible")
                assert page.is_visible("#user-menu [data-nav=usage]")
                assert_no_sideways_scroll(page, "the console's index with the menu open at 390 px")
                page.screenshot(path=str(shots / "console-menu-phone.png"), full_page=True)
                page.set_viewport_size({"width": 1440, "height": 900})  # the menu stays open
                page.screenshot(path=str(shots / "console-menu-desktop.png"))
                page.click("#user-menu [data-nav=usage]")
                page.wait_for_url("**/usage/")
            context.close()
    assert len(list(shots.glob("usage-*.png"))) == 4
    assert "Traceback" not in server.log()
