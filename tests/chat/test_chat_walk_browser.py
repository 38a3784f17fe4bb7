"""The chat page as a member uses it, in a real browser (Debian's Chromium, headless, driven by
the playwright package), in Chinese and in English, at 1440 and 390 px: the department-file
picker closes after a choice and leaves Send uncovered; a template chip fills in its instruction
in the reader's language without sending (a file can still be attached) and its schema never shows in the bubble; the
answer's footer stays after a reload; the status panel says nothing is generating once the turn
ended and names the machine's CPU as such; no width scrolls sideways; on a phone the camera is
offered and its photo attached. Screenshots go to the
test's temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chat.conftest import png_bytes
from tests.support.browser import FINANCE_AND_BOB, PASSWORD, WIDTHS, browser_api, chromium, sign_in

pytestmark = pytest.mark.slow

SET_UP = (
    FINANCE_AND_BOB
    + """
import io
from PIL import Image
from assets.services import asset_upload
from departments.tenancy import department_scope
buffer = io.BytesIO()
Image.new("RGB", (96, 64), (40, 160, 60)).save(buffer, "PNG")
with department_scope(finance):
    asset_upload(department=finance, uploaded_by=bob, stream=iter([buffer.getvalue()]), original_name="site-photo.png")
print("ok")
"""
)

TEXTS = {
    "zh-hans": {"locale": "zh-CN", "send": "发送", "picker": "部门文件", "prompt": "请从这张增值税发票中提取"},
    "en": {"locale": "en-US", "send": "Send", "picker": "Department files", "prompt": "Extract from this VAT invoice"},
}

# Whether the element at the centre of Send is Send itself (nothing covers it).
SEND_UNCOVERED = """() => {
  const send = document.getElementById('send').getBoundingClientRect();
  const top = document.elementFromPoint(send.left + send.width / 2, send.top + send.height / 2);
  return top !== null && top.closest('#send') !== null;
}"""

# The status panel's "generating" figure reads "0 of N", in the page's own words.
NOTHING_GENERATING = """() => {
  const texts = JSON.parse(document.getElementById('chat-texts').textContent);
  const shown = document.getElementById('st-active').textContent.trim();
  const pattern = texts.active.replace('{active}', '0').replace('{max}', '[0-9]+');
  return new RegExp('^' + pattern + '$').test(shown);
}"""


def test_the_chat_page_in_both_languages_at_both_widths(live_server_factory, shared_demo_model_dir, tmp_path, shots):
    sync_api = browser_api()
    server = live_server_factory(model_path=shared_demo_model_dir, env={"MODEL_READINESS_CHECK": "true"})
    assert server.shell(SET_UP).splitlines()[-1] == "ok"
    server.wait_for("/readyz", timeout=180)

    with chromium(sync_api) as browser:
        for language, texts in TEXTS.items():
            context = browser.new_context(locale=texts["locale"], viewport=WIDTHS["desktop"])
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda message, seen=errors: message.type == "error" and seen.append(message.text))
            sign_in(page, server.base_url, "bob", PASSWORD)
            page.wait_for_url(f"{server.base_url}/d/finance/")
            for width_name, viewport in WIDTHS.items():
                walk(page, language, texts, width_name, viewport, shots)
            assert not page.is_visible(".composer-row .camera-choice")  # no camera to offer here
            assert not errors, errors
            context.close()

        # A phone (touch, coarse pointer): the composer offers the camera, and a photo taken with
        # it is attached like any file.
        context = browser.new_context(locale="en-US", viewport=WIDTHS["phone"], is_mobile=True, has_touch=True)
        page = context.new_page()
        sign_in(page, server.base_url, "bob", PASSWORD)
        page.wait_for_url(f"{server.base_url}/d/finance/")
        page.wait_for_selector("#send:not([disabled])", timeout=30_000)
        assert page.is_visible(".composer-row .camera-choice")
        assert page.get_attribute("#camera-input", "capture") == "environment"
        assert page.get_attribute("#file-input", "capture") is None  # the chooser never forces the camera
        photo = tmp_path / "inspection.png"
        photo.write_bytes(png_bytes((200, 120, 40), (80, 60)))
        page.set_input_files("#camera-input", str(photo))
        page.wait_for_selector("#pending-attachments .attachment img", timeout=30_000)
        page.screenshot(path=str(shots / "chat-camera-phone.png"), full_page=True)
        context.close()


def walk(page, language: str, texts: dict, width_name: str, viewport: dict, shots: Path) -> None:
    where = f"{language} at {width_name}"
    page.set_viewport_size(viewport)
    page.goto(page.url.split("?", 1)[0])  # a new conversation
    page.wait_for_selector("#send:not([disabled])", timeout=30_000)  # the websocket is open
    assert page.evaluate("() => document.documentElement.lang") == language
    assert page.inner_text("#send").strip() == texts["send"], where
    assert page.inner_text("#file-picker > summary").strip() == texts["picker"], where
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), where
    page.screenshot(path=str(shots / f"chat-{language}-{width_name}.png"), full_page=True)

    # A file from the department: the picker closes once it is chosen, Send is not covered.
    page.click("#file-picker > summary")
    page.click("#file-picker .pick[data-name='site-photo.png']")
    page.wait_for_selector("#pending-attachments .attachment")
    assert page.evaluate("() => document.getElementById('file-picker').open") is False, where
    page.locator("#send").scroll_into_view_if_needed()
    assert page.evaluate(SEND_UNCOVERED), where

    # A template chip fills in its instruction and sends nothing: the file stays attached.
    chip = page.locator(".template-prompt[data-template=vat-invoice]")
    chip.click()
    assert chip.get_attribute("aria-pressed") == "true"
    instruction = chip.get_attribute("data-prompt")
    assert instruction and page.input_value("#prompt") == instruction, where
    assert instruction.startswith(texts["prompt"]), (where, instruction)  # the reader's language
    assert page.locator("#messages .msg-user").count() == 0, where
    assert page.locator("#pending-attachments .attachment").count() == 1, where

    page.fill("#max-tokens", "4")
    page.click("#send")
    page.wait_for_selector("#messages .msg-assistant .msg-usage", timeout=180_000)
    bubble = page.inner_text("#messages .msg-user .msg-body")
    assert instruction.split()[0] in bubble and '"properties"' not in bubble and "$schema" not in bubble, bubble
    page.wait_for_function(NOTHING_GENERATING, timeout=30_000)  # the 5 s status poll
    load_label = page.evaluate("() => JSON.parse(document.getElementById('chat-texts').textContent).host_load")
    assert page.inner_text("#st-load-label").strip() == load_label, where
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), where
    page.screenshot(path=str(shots / f"chat-answered-{language}-{width_name}.png"), full_page=True)

    # Reloaded, the conversation keeps its answer's footer and its tools.
    page.reload()
    page.wait_for_selector("#messages .msg-assistant .msg-usage")
    assert page.locator("#messages .msg-user .attachments img.thumb").count() == 1, where
    assert page.is_visible("#conversation-tools .rename-form button"), where
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), where
