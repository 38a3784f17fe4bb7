"""Every kind of role signs in in a real browser (Debian's Chromium, headless, driven by the
playwright package) against the platform served on loopback, at 1440 and 390 px, in Chinese and
English: where it lands, what its user menu offers, that no page scrolls sideways, and an
ordinary refusal's styled page (with no traceback in the server's log). Screenshots go to the
test's temporary directory."""

from __future__ import annotations

import json
import time
from functools import partial
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.browser import WIDTHS, assert_no_sideways_scroll, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

PASSWORD = "Correct-Horse-9"

SET_UP = """
import json
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from accounts.models import User
from accounts.roles import MembershipRole
from departments.services import department_create, membership_add
finance = department_create(slug="finance", name="财务部 Finance", acting_user="system")
keys = {}
for username, role in [("dora", ""), ("bob", ""), ("sam", "system"), ("sue", "security"), ("ann", "audit")]:
    user = User(username=username, admin_role=role, password_changed_at=timezone.now())
    user.set_password("Correct-Horse-9")
    user.save()
    if role:
        keys[username] = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True).key
dora, bob = User.objects.get(username="dora"), User.objects.get(username="bob")
membership_add(user=dora, department=finance, role=MembershipRole.ADMIN, acting_user="system")
membership_add(user=bob, department=finance, acting_user="system")
print(json.dumps(keys))
"""

ACCOUNT = ["profile", "password", "two-factor"]
END = ["language", "sign-out"]
AUDITOR_CONSOLES = ["console", "audit", "report"]
# role → (user, the landing path, the consoles on the landing page, the menu's entries)
ROLES = {
    "member": ("bob", "/d/finance/", [], ACCOUNT + END),
    "department administrator": ("dora", "/d/finance/", [], [*ACCOUNT, "api-keys-finance", "models-finance", *END]),
    "system administrator": ("sam", "/d/", ["console", "usage"], [*ACCOUNT, "console", "usage", *END]),
    "security administrator": ("sue", "/d/", ["console", "report"], [*ACCOUNT, "console", "report", *END]),
    "audit administrator": ("ann", "/d/", AUDITOR_CONSOLES, [*ACCOUNT, *AUDITOR_CONSOLES, *END]),
}
MENU_LABELS = {
    "zh-hans": {"profile": "个人资料", "sign-out": "退出登录"},
    "en": {"profile": "Profile", "sign-out": "Log out"},
}
REFUSAL = {"zh-hans": "此操作需要部门管理员角色。", "en": "This needs the department administrator role."}


def totp_code(key_hex: str, *, step_offset: int = 0) -> str:
    from django_otp.oath import TOTP

    totp = TOTP(bytes.fromhex(key_hex), 30, 0, 6, 0)
    totp.time = time.time() + 30 * step_offset
    return f"{totp.token():06d}"


def test_each_role_lands_on_its_work_with_its_menu(live_server_factory, shots):
    sync_api = browser_api()
    server = live_server_factory()
    keys = json.loads(server.shell(SET_UP))

    def check_no_sideways_scroll(page, what: str) -> None:
        assert_no_sideways_scroll(page, what)
        assert "{#" not in page.inner_text("body"), f"template text shown on {what}"

    def menu_entries(page) -> list[str]:
        page.click("#user-menu > summary")
        page.wait_for_selector("#user-menu .user-menu-panel", state="visible")
        return page.eval_on_selector_all(
            "#user-menu .user-menu-panel [data-nav]", "nodes => nodes.map(n => n.dataset.nav)"
        )

    def close_menu(page) -> None:
        page.keyboard.press("Escape")  # static/js/menu.js
        page.wait_for_selector("#user-menu .user-menu-panel", state="hidden")

    def profile_page(page, language: str, landing: str) -> None:
        """The profile, from the menu; a click outside closes the menu again."""
        page.click("#user-menu > summary")
        page.click("#user-menu [data-nav=profile]")
        page.wait_for_selector("dl.profile")
        check_no_sideways_scroll(page, f"the profile at phone width in {language}")
        page.click("#user-menu > summary")
        page.wait_for_selector("#user-menu .user-menu-panel", state="visible")
        page.mouse.click(5, WIDTHS["phone"]["height"] - 5)  # left of the right-aligned panel
        page.wait_for_selector("#user-menu .user-menu-panel", state="hidden")
        page.goto(f"{server.base_url}{landing}")

    def refusal_page(page, language: str, width_name: str) -> None:
        """A member opens the department administrator's page: the styled 403 with its reason."""
        response = page.goto(f"{server.base_url}/d/finance/api-keys/")
        assert response.status == 403
        assert page.inner_text("#error-reason").strip() == REFUSAL[language]
        assert page.is_visible("#user-menu > summary") and page.is_visible("[data-nav=error-home]")
        check_no_sideways_scroll(page, f"the 403 page at {width_name} in {language}")
        page.screenshot(path=str(shots / f"refusal-{language}-{width_name}.png"), full_page=True)
        page.goto(f"{server.base_url}/d/finance/")

    def file_page(page, language: str, width_name: str) -> None:
        """One chooser on the drop zone (the input itself is hidden behind its label), no camera
        choice without a touch screen."""
        page.goto(f"{server.base_url}/d/finance/files/")
        choosers = page.eval_on_selector_all(
            "#drop-zone input[type=file], #drop-zone label", "nodes => nodes.filter(n => n.offsetWidth > 1).length"
        )
        assert choosers == 1, choosers
        assert not page.is_visible(".camera-choice")
        check_no_sideways_scroll(page, f"the file page at {width_name} in {language}")
        page.goto(f"{server.base_url}/d/finance/")

    def api_key_page(page, language: str, width_name: str) -> None:
        """The department administrator reaches the API keys from the menu, creates one and copies it."""
        page.click("#user-menu > summary")
        page.click("#user-menu [data-nav=api-keys-finance]")
        page.wait_for_selector("#key-table")
        page.fill("#id_name", f"ERP {language} {width_name}")
        page.check("input[name=scopes][value=chat]")
        page.click(".api-key-form button[type=submit]")
        page.wait_for_selector("#new-key-value")
        raw_key = page.inner_text("#new-key-value").strip()
        assert raw_key.startswith("mmk_")
        page.click("#copy-new-key")
        copied = {"zh-hans": "已复制。", "en": "Copied."}[language]
        page.wait_for_function("(text) => document.getElementById('copy-status').textContent === text", arg=copied)
        assert page.evaluate("() => navigator.clipboard.readText()") == raw_key
        check_no_sideways_scroll(page, f"the API keys page at {width_name} in {language}")
        page.screenshot(path=str(shots / f"api-keys-{language}-{width_name}.png"), full_page=True)
        page.goto(f"{server.base_url}/d/finance/")

    with chromium(sync_api) as browser:
        # Signed out: switching the language on the sign-in page keeps where one was going.
        context = browser.new_context(locale="zh-CN", viewport=WIDTHS["phone"])
        page = context.new_page()
        page.goto(f"{server.base_url}/d/finance/files/")
        assert page.url.endswith("/accounts/login/?next=/d/finance/files/")
        check_no_sideways_scroll(page, "the sign-in page at phone width")
        page.click("form.lang button[value=en]")
        page.wait_for_function("() => document.documentElement.lang === 'en'")
        assert page.input_value("main input[name=next]") == "/d/finance/files/"
        assert parse_qs(urlsplit(page.url).query) == {"next": ["/d/finance/files/"]}
        context.close()

        for role, (username, landing, consoles, menu) in ROLES.items():
            context = browser.new_context(locale="zh-CN", viewport=WIDTHS["desktop"])
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
            page = context.new_page()
            code = partial(totp_code, keys[username]) if username in keys else None
            sign_in(page, server.base_url, username, PASSWORD, code=code)
            assert page.url == f"{server.base_url}{landing}", (role, page.url)

            for language in ("zh-hans", "en"):
                if language == "en":  # through the menu's own language switch
                    page.click("#user-menu > summary")
                    page.click("#user-menu .lang button[value=en]")
                    page.wait_for_function("() => document.documentElement.lang === 'en'")
                    assert page.url == f"{server.base_url}{landing}"
                assert page.evaluate("() => document.documentElement.lang") == language
                for width_name, viewport in WIDTHS.items():
                    page.set_viewport_size(viewport)
                    if consoles:
                        shown = page.eval_on_selector_all(
                            "#console-links [data-nav]", "nodes => nodes.map(n => n.dataset.nav)"
                        )
                        assert shown == consoles, (role, shown)
                        assert page.is_visible("#console-links")
                    check_no_sideways_scroll(page, f"{role}'s landing at {width_name} in {language}")
                    assert menu_entries(page) == menu, (role, language, width_name)
                    labels = MENU_LABELS[language]
                    assert page.inner_text("#user-menu [data-nav=profile]").strip() == labels["profile"]
                    assert page.inner_text("#user-menu [data-nav=sign-out]").strip() == labels["sign-out"]
                    check_no_sideways_scroll(page, f"{role}'s open menu at {width_name} in {language}")
                    slug = f"{role.replace(' ', '-')}-{language}-{width_name}"
                    page.screenshot(path=str(shots / f"{slug}-menu.png"), full_page=True)
                    close_menu(page)
                    if width_name == "phone":
                        profile_page(page, language, landing)
                    if username == "bob":
                        refusal_page(page, language, width_name)
                        file_page(page, language, width_name)
                    if username == "dora":
                        api_key_page(page, language, width_name)
            context.close()

        # A phone (touch, coarse pointer): the file page offers the camera besides the one
        # chooser; a desktop never sees the camera choice (checked for bob above).
        context = browser.new_context(locale="en-US", viewport=WIDTHS["phone"], is_mobile=True, has_touch=True)
        page = context.new_page()
        page.goto(f"{server.base_url}/accounts/login/?next=/d/finance/files/")
        page.fill("#id_username", "bob")
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url("**/d/finance/files/")
        assert page.is_visible(".camera-choice")
        assert page.get_attribute("#camera-input", "capture") == "environment"
        assert page.get_attribute("#camera-input", "accept") == "image/*"
        assert page.get_attribute("#file-input", "capture") is None  # the chooser never forces the camera
        check_no_sideways_scroll(page, "the file page on a phone")
        page.screenshot(path=str(shots / "files-phone.png"), full_page=True)
        context.close()

    assert len(list(shots.glob("*-menu.png"))) == len(ROLES) * 4
    assert len(list(shots.glob("refusal-*.png"))) == len(list(shots.glob("api-keys-*.png"))) == 4
    assert "Traceback" not in server.log()
