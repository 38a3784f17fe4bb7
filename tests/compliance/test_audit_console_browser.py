"""The auditor console in a real browser (Debian's Chromium, headless, driven by playwright)
against the platform served on loopback, at 1440 and 390 px, in Chinese and English: the page
never scrolls sideways (the table scrolls inside its own box), rows keep one line, and the
chain is verified in the background from the console. Screenshots go to the test's temporary
directory."""

from __future__ import annotations

import json

import pytest

from tests.portal.test_roles_browser import PASSWORD, totp_code
from tests.support.browser import NO_SIDEWAYS_SCROLL, WIDTHS, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

SET_UP = """
import json
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from accounts.models import User
from compliance.events import EventType, Outcome
from compliance.services import audit_record
ann = User(username="ann", admin_role="audit", password_changed_at=timezone.now())
ann.set_password("Correct-Horse-9")
ann.save()
key = TOTPDevice.objects.create(user=ann, name="authenticator", confirmed=True).key
for index in range(60):
    audit_record(
        event_type=EventType.ASSET_VIEW if index % 2 else EventType.LOGIN_FAILED,
        outcome=Outcome.SUCCESS if index % 2 else Outcome.FAILURE,
        object_type="assets.asset",
        object_repr="一份很长很长的对象描述 " * 8,
        details={"index": index, "note": "很长的细节 long details " * 20},
    )
print(json.dumps({"key": key}))
"""
VERIFIED = {"zh-hans": "完好", "en": "intact"}
ROW_MAX_PX = 48  # one line of text and its padding


def test_the_console_fits_a_phone_and_verifies_the_chain(live_server_factory, shots):
    sync_api = browser_api()
    server = live_server_factory()
    key = json.loads(server.shell(SET_UP))["key"]
    with chromium(sync_api) as browser:
        context = browser.new_context(locale="zh-CN", viewport=WIDTHS["desktop"])
        page = context.new_page()
        sign_in(page, server.base_url, "ann", PASSWORD, code=lambda: totp_code(key))
        for language in ("zh-hans", "en"):
            if language == "en":
                page.click("#user-menu > summary")
                page.click("#user-menu .lang button[value=en]")
                page.wait_for_function("() => document.documentElement.lang === 'en'")
            for width_name, viewport in WIDTHS.items():
                page.set_viewport_size(viewport)
                page.goto(f"{server.base_url}/audit/?size=50")
                assert page.evaluate("() => document.documentElement.lang") == language
                rows = page.eval_on_selector_all(
                    "table.audit-table tbody tr", "rows => rows.map(r => r.getBoundingClientRect().height)"
                )
                assert len(rows) == 50 and max(rows) <= ROW_MAX_PX, rows
                widths = page.eval_on_selector_all(
                    "table.audit-table tbody tr:first-child td",
                    "cells => cells.map(c => c.getBoundingClientRect().width)",
                )
                assert min(widths[4:6]) >= 60, widths  # event type and outcome stay readable
                width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
                assert page.evaluate(NO_SIDEWAYS_SCROLL), f"/audit/ scrolls sideways at {width_name}: {width}"
                page.screenshot(path=str(shots / f"audit-{language}-{width_name}.png"), full_page=True)
                page.click("table.audit-table tbody tr:first-child td.details a")
                page.wait_for_selector("pre.details-json")
                assert page.evaluate(NO_SIDEWAYS_SCROLL), f"the entry detail scrolls sideways at {width_name}"
                page.goto(f"{server.base_url}/audit/")
                page.click(".verify-action button[type=submit]")
                page.wait_for_url("**/audit/verify/*/")
                # The page reloads itself until the run's row says it finished.
                page.wait_for_selector(".verify-run[data-state=done]", timeout=60_000)
                assert VERIFIED[language] in page.inner_text(".verify-state")
                assert page.evaluate(NO_SIDEWAYS_SCROLL), f"the verification scrolls sideways at {width_name}"
                page.screenshot(path=str(shots / f"verify-{language}-{width_name}.png"), full_page=True)
        context.close()
    assert len(list(shots.glob("*.png"))) == 8
    assert "Traceback" not in server.log()
