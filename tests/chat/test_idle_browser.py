"""An open chat tab no longer keeps its session alive (IA-2), in a real browser (Debian's Chromium
driven by playwright) against the platform served on loopback with a short idle limit.

The status panel polls every five seconds and the idle warning looks at the session: neither
extends it. The warning shows half the idle limit before the end; "keep me signed in" extends the
session; left alone, the session then ends on time, the websocket closes, and the end is audited.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.chat.test_browser import SET_UP
from tests.support.browser import browser_api, chromium

pytestmark = pytest.mark.slow

IDLE_SECONDS = 20  # the test profile's short idle limit: warning 10 s before the end
SESSION_ENDED = "Your session has ended. Please sign in again."

EXPIRED_QUERY = """
import json
from compliance.models import AuditEntry
rows = AuditEntry.objects.filter(actor_name="bob", event_type="auth.session_expired")
print(json.dumps([e.details for e in rows]))
"""

SESSION_STATE = "() => fetch('/accounts/session/', {headers: {Accept: 'application/json'}}).then(r => r.json())"


def test_polls_do_not_keep_an_idle_session_alive_and_the_warning_does(live_server_factory):
    sync_api = browser_api()
    server = live_server_factory(env={"SESSION_IDLE_SECONDS": str(IDLE_SECONDS)})
    assert server.shell(SET_UP) == "ok"

    with chromium(sync_api) as browser:
        page = browser.new_context(locale="en-US").new_page()
        status_polls: list[float] = []  # when the status panel's poll was answered

        def answered(request) -> None:
            if request.url.endswith("/d/finance/chat/status/"):
                status_polls.append(time.monotonic())

        page.on("requestfinished", answered)
        page.goto(f"{server.base_url}/accounts/login/")
        page.fill("#id_username", "bob")
        page.fill("#id_password", "Correct-Horse-9")
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{server.base_url}/d/finance/")
        page.wait_for_selector("#send:not([disabled])", timeout=30000)  # the websocket is open

        # The warning comes although the status panel kept polling.
        page.wait_for_selector("#session-keep", state="visible", timeout=(IDLE_SECONDS + 20) * 1000)
        assert status_polls, "the status panel did not poll"
        assert re.fullmatch(r"\d+ s left", page.text_content("#session-countdown"))
        state = page.evaluate(SESSION_STATE)
        assert state["signed_in"] and state["idle_remaining_seconds"] <= state["warn_seconds"] == IDLE_SECONDS / 2

        # "Keep me signed in" extends the session.
        kept = time.monotonic()
        page.click("#session-keep")
        page.wait_for_selector("#session-warning", state="hidden", timeout=10000)
        state = page.evaluate(SESSION_STATE)
        assert state["signed_in"] and state["idle_remaining_seconds"] > state["warn_seconds"], state

        # Left alone, with the panel still polling, the session ends on time.
        page.wait_for_selector("#session-ended-text", state="visible", timeout=(IDLE_SECONDS + 20) * 1000)
        ended = time.monotonic()
        assert ended - kept >= IDLE_SECONDS - 0.5  # not before the idle limit after the answer
        assert sum(kept < when < ended for when in status_polls) >= 2, status_polls
        assert "next=%2Fd%2Ffinance%2F" in page.get_attribute("#session-sign-in", "href")
        # The chat's websocket closed with the session (its watchdog, not a poll, noticed).
        page.wait_for_function(
            "(text) => document.getElementById('st-connection').textContent === text",
            arg=SESSION_ENDED,
            timeout=15000,
        )
        assert page.is_disabled("#send")

    assert json.loads(server.shell(EXPIRED_QUERY)) == [{"reason": "idle"}]
