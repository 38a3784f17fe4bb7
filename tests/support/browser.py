"""What the browser tests share: Debian's Chromium, headless, driven by the playwright package,
and the two widths every page is looked at."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
NO_SIDEWAYS_SCROLL = "() => document.scrollingElement.scrollWidth <= window.innerWidth"


def assert_no_sideways_scroll(page, what: str) -> None:
    """``page`` is no wider than its window (``what`` names it in the failure)."""
    widths = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{what} scrolls sideways: {widths}"


def browser_api():
    """playwright's sync API: a skip where the package is missing (its reason says so), a
    failure where Chromium is (it is a declared system package, so that is a broken set-up)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package drives the browser")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (Debian's chromium package, scripts/system-packages)")
    return sync_api


@contextmanager
def chromium(sync_api) -> Iterator:
    """A headless Chromium, closed afterwards whatever happens."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, base_url: str, username: str, password: str, *, code: Callable[[], str] | None = None) -> None:
    """Through the sign-in form; with ``code`` (the authenticator's current code, asked for when
    the second step is shown), through the two-factor step as well."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    if code is not None:
        page.wait_for_url("**/accounts/login/verify/")
        page.fill("input[name=token]", code())
        page.click("main button[type=submit]")
        page.wait_for_load_state()


# Run in the served platform's shell (``LiveServer.shell``): the department "finance" and its
# member bob, whose password is PASSWORD. Tests add what else they need after it.
FINANCE_AND_BOB = """
from accounts.models import User
from departments.services import department_create, membership_add
finance = department_create(slug="finance", name="财务部 Finance", acting_user="system")
bob = User(username="bob")
bob.set_password("Correct-Horse-9")
bob.save()
membership_add(user=bob, department=finance, acting_user="system")
"""
PASSWORD = "Correct-Horse-9"
