"""A real browser (Debian's Chromium, headless, driven by the playwright package) against the
platform served by uvicorn on loopback: sign in, upload an image, ask, watch tokens arrive before
the answer is complete, stop, reload and find the conversation, and find the audit entries.
Screenshots of the chat page (laptop and tablet widths) go to the test's temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chat.conftest import png_bytes
from tests.support.browser import FINANCE_AND_BOB, PASSWORD, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

SET_UP = FINANCE_AND_BOB + 'print("ok")\n'

AUDIT_QUERY = """
import json
from compliance.models import AuditEntry
rows = AuditEntry.objects.filter(actor_name="bob").order_by("sequence")
print(json.dumps([[e.event_type, e.outcome, e.details] for e in rows], ensure_ascii=False))
"""


def served_with_bob(live_server_factory, model_path: Path):
    """The platform with the model at ``model_path`` loaded, and finance with its member bob."""
    server = live_server_factory(model_path=model_path, env={"MODEL_READINESS_CHECK": "true"})
    assert server.shell(SET_UP) == "ok"
    server.wait_for("/readyz", timeout=180)
    return server


def bobs_chat_page(browser, server) -> tuple[object, list[str]]:
    """bob signed in, on finance's chat page (laptop-wide, in English) with its websocket open;
    returns the page and the list its console errors are collected in."""
    page = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900}).new_page()
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    sign_in(page, server.base_url, "bob", PASSWORD)
    assert "/accounts/login/" not in page.url, page.text_content("main")
    page.goto(f"{server.base_url}/d/finance/")
    page.wait_for_selector("#send:not([disabled])", timeout=15000)  # the websocket is open
    return page, console_errors


def test_chat_in_a_real_browser(live_server_factory, endless_demo_model_dir, tmp_path, shots):
    sync_api = browser_api()
    server = served_with_bob(live_server_factory, endless_demo_model_dir)
    image = tmp_path / "red-invoice.png"
    image.write_bytes(png_bytes((210, 40, 40), (120, 90)))

    with chromium(sync_api) as browser:
        page, console_errors = bobs_chat_page(browser, server)
        assert page.is_visible("#demo-banner")

        # Upload an image: it comes back as a pending attachment with its thumbnail.
        page.set_input_files("#file-input", str(image))
        page.wait_for_selector("#pending-attachments .attachment img", timeout=20000)

        page.fill("#max-tokens", "1500")
        page.fill("#prompt", "What is on this invoice? **bold** <img src=x onerror=alert(1)>")
        page.click("#send")
        body = page.locator(".msg-assistant.streaming .msg-body")
        # Tokens arrive while the answer is still streaming (the stop button is showing).
        page.wait_for_function(
            "() => { const b = document.querySelector('.msg-assistant.streaming .msg-body');"
            " return b && b.textContent.length > 0; }",
            timeout=90000,  # a shared 2-core machine under load can be slow
        )
        first = body.text_content()
        page.wait_for_function(
            "(n) => { const b = document.querySelector('.msg-assistant.streaming .msg-body');"
            " return b && b.textContent.length > n; }",
            arg=len(first),
            timeout=90000,  # a shared 2-core machine under load can be slow
        )
        assert page.is_visible("#stop")
        page.screenshot(path=str(shots / "chat-streaming.png"), full_page=True)
        page.click("#stop")
        page.wait_for_selector(".msg-assistant .msg-usage", timeout=180000)  # slow under a loaded CI machine
        usage_line = page.text_content(".msg-assistant .msg-usage")
        assert usage_line.startswith("Stopped"), usage_line
        assert not page.is_visible("#stop")
        # The user's text was shown as text, never as markup.
        assert page.locator(".msg-user img[src=x]").count() == 0
        assert "<img src=x" in page.text_content(".msg-user .msg-body")
        page.screenshot(path=str(shots / "chat-page.png"), full_page=True)

        # Rename, Delete and Export are there for the new conversation without a reload.
        assert "?c=" in page.url
        conversation_id = page.url.split("?c=", 1)[1]
        assert page.is_visible("#conversation-tools .rename-form button")
        rename_action = page.get_attribute("#conversation-tools .rename-form", "action")
        assert rename_action.endswith(f"/conversations/{conversation_id}/rename/"), rename_action
        delete_action = page.get_attribute("#conversation-tools .delete-form", "action")
        assert delete_action.endswith(f"/conversations/{conversation_id}/delete/"), delete_action
        # Export too: it downloads this conversation as Markdown.
        export_href = page.get_attribute("#conversation-export a[data-export=md]", "href")
        assert export_href.endswith(f"/conversations/{conversation_id}/export.md"), export_href
        with page.expect_download() as download_info:
            page.click("#conversation-export a[data-export=md]")
        exported = Path(download_info.value.path()).read_text(encoding="utf-8")
        assert "What is on this invoice?" in exported

        # Reload: the address names the conversation; it is in the list with both messages.
        page.reload()
        page.wait_for_selector("#conversation-list li.current a")
        assert "What is on this invoice?" in page.text_content("#conversation-list li.current a")
        assert page.locator("#messages .msg-user .attachments img.thumb").count() == 1
        assert page.text_content("#messages .msg-assistant .msg-status").strip() == "Stopped"
        assert len(page.text_content("#messages .msg-assistant .msg-body")) > 0

        # A tablet.
        page.set_viewport_size({"width": 820, "height": 1180})
        page.screenshot(path=str(shots / "chat-page-tablet.png"), full_page=True)
        assert not console_errors, console_errors

    trail = json.loads(server.shell(AUDIT_QUERY))
    kinds = [(event, outcome) for event, outcome, _details in trail]
    assert ("asset.upload", "success") in kinds
    assert ("conversation.create", "success") in kinds
    calls = [details for event, _outcome, details in trail if event == "inference.call"]
    assert len(calls) == 1 and calls[0]["finish_reason"] == "cancelled" and len(calls[0]["asset_ids"]) == 1
    assert 0 < calls[0]["completion_tokens"] < 1500
