"""In a real browser (Debian's Chromium through playwright, the platform on loopback): a question
pinning pages of an attached PDF shows, under the answer, a thumbnail per page the answer drew on
— as soon as the answer ends (chat.js, from the done frame) and again after a reload (the
template, from the stored usage) — and clicking one opens that page larger."""

from __future__ import annotations

import pytest

from tests.assets.test_retrieval_pdf import rendered_width, text_pdf
from tests.chat.test_browser import bobs_chat_page, served_with_bob
from tests.support.browser import browser_api, chromium

pytestmark = pytest.mark.slow


def test_page_thumbnails_under_the_answer_live_and_after_a_reload(live_server_factory, shared_demo_model_dir, tmp_path):
    sync_api = browser_api()
    server = served_with_bob(live_server_factory, shared_demo_model_dir)
    manual = tmp_path / "manual.pdf"
    manual.write_bytes(text_pdf([f"Section {number}" for number in range(1, 9)]))

    with chromium(sync_api) as browser:
        page, errors = bobs_chat_page(browser, server)
        page.set_input_files("#file-input", str(manual))
        page.wait_for_selector("#pending-attachments .attachment", timeout=20000)
        page.fill("#max-tokens", "3")
        page.fill("#prompt", "What do pages 6 and 8 say?")
        page.click("#send")

        def shown() -> list[tuple[str, str]]:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.msg-assistant .msg-pages img')]"
                ".filter(i => i.complete && i.naturalWidth > 0).length === 2",
                timeout=120000,  # a shared 2-core machine under load can be slow
            )
            links = page.locator(".msg-assistant .msg-pages a")
            return [
                (links.nth(i).get_attribute("href"), links.nth(i).locator("img").get_attribute("alt"))
                for i in range(links.count())
            ]

        live = shown()
        assert [href.split("?", 1)[1] for href, _alt in live] == ["page=6&size=large", "page=8&size=large"]
        assert [alt for _href, alt in live] == ["page 6", "page 8"]
        width = page.evaluate("() => document.querySelector('.msg-assistant .msg-pages img').naturalWidth")
        assert width == rendered_width(6, 320)  # the thumbnail of page 6, not of page 1

        with page.context.expect_page() as opened:
            page.click(".msg-assistant .msg-pages a >> nth=1")
        larger = opened.value
        larger.wait_for_load_state()
        assert larger.url.endswith("?page=8&size=large")
        assert larger.evaluate("() => document.images[0].naturalWidth") == rendered_width(8, 1200)
        larger.close()

        page.reload()
        page.wait_for_selector("#send:not([disabled])", timeout=15000)
        assert shown() == live
        assert errors == []
