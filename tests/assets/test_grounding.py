"""Grounding extracted values in a document's text layer (assets.documents.grounding)."""

from __future__ import annotations

import pytest

from assets.documents.grounding import (
    Grounding,
    ground_fields,
    ground_value,
    labels_of,
)
from assets.documents.pages import DocumentText, Line, PageText, TextSource


def _page(number: int, lines, *, source=TextSource.OCR, usable=True) -> PageText:
    return PageText(
        number=number,
        lines=tuple(Line(text, box) for text, box in lines),
        source=source,
        width=1000,
        height=1400,
        usable=usable,
    )


INVOICE = DocumentText(
    pages=(
        _page(1, [("Delivery note 交货单", (100, 50, 500, 80)), ("Total pieces: 1,234", (100, 200, 400, 230))]),
        _page(
            2,
            [
                ("增值税专用发票 No.04419876", (100, 50, 600, 80)),
                ("开票日期：2024年1月5日", (600, 100, 900, 130)),
                ("购买方名称：某某制造股份有限公司", (100, 160, 600, 190)),
                ("Seller: Beijing ACME Tech Co., Ltd.", (100, 220, 700, 250)),
                # One value in three OCR boxes on one line: "¥" "1,234" ".56元".
                ("价税合计：", (100, 500, 250, 530)),
                ("¥", (262, 502, 280, 532)),
                ("1,234", (284, 501, 360, 531)),
                (".56元", (362, 500, 420, 530)),
                ("税率 13%   税额 11234.50", (100, 600, 600, 630)),
                ("数量", (100, 700, 160, 730)),
                ("1", (110, 740, 130, 770)),
                ("是否含税：是", (100, 800, 300, 830)),
                ("ＩＮＶ－２０２４－００７", (700, 900, 950, 930)),
            ],
        ),
    )
)


def _inside(inner, outer, slack=1.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


@pytest.mark.parametrize(
    "value", ["1234.56", 1234.56, "¥1,234.56", "￥1,234.56", "1234.560", "RMB 1,234.56", "1234.56元"]
)
def test_amount_variants_ground_on_the_amount_across_three_boxes(value):
    found = ground_value(INVOICE, value)
    assert isinstance(found, Grounding) and found.page == 2 and found.source == "ocr"
    # The union of the "1,234" and ".56" boxes on that row, not the label, not the "¥" box.
    assert _inside(found.box, (284, 500, 420, 532)) and found.box[0] >= 284 and found.box[2] >= 380
    assert found.text.replace(" ", "") == "1,234.56"


@pytest.mark.parametrize(
    "value", ["2024-01-05", "2024/1/5", "2024年1月5日", "2024.01.05", "Jan 5, 2024", "5 January 2024"]
)
def test_date_variants_ground_on_the_written_date(value):
    found = ground_value(INVOICE, value)
    assert found is not None and found.page == 2 and found.text == "2024年1月5日"
    assert _inside(found.box, (600, 100, 900, 130)) and found.box[0] > 700  # the date, not its label


def test_numbers_match_as_whole_numbers():
    assert ground_value(INVOICE, 1234.5) is None  # 11234.50 and 1,234.56 are other numbers
    assert ground_value(INVOICE, "1234.57") is None
    assert ground_value(INVOICE, 11234.5).text == "11234.50"
    assert ground_value(INVOICE, 234.56) is None  # part of 1,234.56
    # 1234 is on page 1 ("Total pieces: 1,234"), not inside 1,234.56 on page 2.
    assert ground_value(INVOICE, 1234).page == 1
    # A digit string with a leading zero is an identifier: matched as text, after "No.".
    found = ground_value(INVOICE, "04419876")
    assert found.page == 2 and found.text == "04419876"
    assert ground_value(INVOICE, "4419876") is None  # as a number, 04419876 is another token


def test_text_is_compared_nfkc_case_and_whitespace_insensitive():
    assert ground_value(INVOICE, "beijing acme tech").text == "Beijing ACME Tech"
    assert ground_value(INVOICE, "BeijingACMETech") is not None  # OCR's lost spaces
    assert ground_value(INVOICE, "INV-2024-007").text == "ＩＮＶ－２０２４－００７"  # full width
    assert ground_value(INVOICE, "某某制造股份有限公司").page == 2
    assert ground_value(INVOICE, "  某某制造股份有限公司。 ") is not None  # edge punctuation ignored
    # Whole tokens: a Latin value does not ground inside a longer word.
    assert ground_value(INVOICE, "ACM") is None
    assert ground_value(INVOICE, "eijing ACME") is None


def test_absent_values_are_ungrounded():
    for value in ("上海某某机械有限公司", "91310115MA1H7GXX3B", 12800.0, "2024-01-06", "Shanghai"):
        assert ground_value(INVOICE, value) is None
    assert ground_value(DocumentText(), "anything at all") is None
    for nothing in (None, "", True, False, [], {}):
        assert ground_value(INVOICE, nothing) is None


def test_short_values_never_ground_without_their_label():
    # "1", "是", "13%" and "12" all occur in the text (inside 1,234, 是否, 13%, 2024 …).
    for short in ("1", 1, "是", "13%", 13, "12", "A1"):
        assert ground_value(INVOICE, short) is None, short


def test_a_short_value_grounds_once_next_to_its_label():
    tax_rate = labels_of("tax_rate", {"description": "税率, e.g. 13%"})
    assert tax_rate == ["taxrate", "税率"]
    found = ground_value(INVOICE, "13%", labels=tax_rate)
    assert found.text == "13%" and _inside(found.box, (100, 600, 600, 630))
    # Under its label, on the row below.
    quantity = ground_value(INVOICE, 1, labels=labels_of("quantity", {"description": "数量"}))
    assert quantity is not None and _inside(quantity.box, (110, 740, 130, 770))
    # On the label's row, after it (the 是 inside 是否 comes before the label's end).
    included = ground_value(INVOICE, "是", labels=labels_of("tax_included", {"description": "是否含税"}))
    assert included is not None and included.box[0] > 250
    # Next to another label, or a value that is not the one next to the label: refused.
    assert ground_value(INVOICE, "1", labels=labels_of("tax_rate", {"description": "税率"})) is None
    assert ground_value(INVOICE, "14%", labels=tax_rate) is None


def test_a_short_value_occurring_twice_next_to_its_label_is_ambiguous():
    page = _page(1, [("数量 1 件, 赠品 1 件", (0, 0, 400, 30))])
    labels = labels_of("quantity", {"description": "数量"})
    assert ground_value(DocumentText(pages=(page,)), "1", labels=labels) is None


def test_far_apart_columns_are_not_joined():
    page = _page(1, [("Invoice 12", (0, 0, 100, 20)), ("34.50 paid", (600, 0, 700, 20))])
    document = DocumentText(pages=(page,))
    assert ground_value(document, 1234.5) is None
    assert ground_value(document, "Invoice 1234") is None


def test_unusable_pages_are_not_searched_and_preferred_pages_come_first():
    twice = DocumentText(
        pages=(
            _page(1, [("Order ACME-77-X", (0, 0, 200, 20))]),
            _page(2, [("Order ACME-77-X", (0, 0, 200, 20))]),
            _page(3, [("Broken ZULU-99", (0, 0, 200, 20))], usable=False),
        )
    )
    assert ground_value(twice, "ACME-77-X").page == 1
    assert ground_value(twice, "ACME-77-X", pages=[2]).page == 2
    assert ground_value(twice, "ZULU-99") is None


def test_every_leaf_of_an_object_is_grounded_by_path():
    schema = {
        "type": "object",
        "properties": {
            "total": {"type": "number", "description": "价税合计"},
            "tax_rate": {"type": "string", "description": "税率"},
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"qty": {"type": "integer", "description": "数量"}}},
            },
            "seller": {"type": "object", "properties": {"name": {"type": "string"}}},
            "paid": {"type": "boolean"},
            "missing_text": {"type": "string"},
        },
    }
    value = {
        "total": "¥1,234.56",
        "tax_rate": "13%",
        "items": [{"qty": 1}, {"qty": 7}],
        "seller": {"name": "Beijing ACME Tech Co., Ltd.", "country": None},
        "paid": True,
        "missing_text": "上海某某机械有限公司",
        "1,234.56": "a key the schema does not declare",  # left out: keys come from the schema
    }
    found = ground_fields(INVOICE, value, schema=schema)
    assert set(found) == {"total", "tax_rate", "items[0].qty", "items[1].qty", "seller.name", "missing_text"}
    assert found["total"].page == 2 and found["tax_rate"].text == "13%" and found["items[0].qty"] is not None
    assert found["items[1].qty"] is None and found["missing_text"] is None
    assert found["seller.name"].text.startswith("Beijing ACME")


def test_ocr_dots_for_thousands_commas_still_read_as_the_number():
    page = _page(1, [("税额：1.432.35", (0, 0, 300, 30)), ("Rate 1.432", (0, 100, 300, 130))])
    document = DocumentText(pages=(page,))
    assert ground_value(document, 1432.35).text == "1.432.35"
    assert ground_value(document, 1432) is None  # one dot is a decimal point: 1.432
    assert ground_value(document, "1.432").text == "1.432"
    # Letters right before a number make it part of a word; a currency word or a space does not.
    words = DocumentText(pages=(_page(1, [("Ref A98765 and RMB43210 and Qty 55555", (0, 0, 600, 30))]),))
    assert ground_value(words, 98765) is None
    assert ground_value(words, 43210) is not None and ground_value(words, 55555) is not None


def test_characters_nfkc_joins_splits_or_drops_keep_their_boxes():
    page = _page(
        1,
        [
            ("Ref: ﬁnance-2024-77 ok", (0, 0, 460, 30)),  # "ﬁ" is one character, "fi" after NFKC
            ("合计：12\u200b800.00", (0, 100, 300, 130)),  # a zero-width space inside the number
        ],
    )
    document = DocumentText(pages=(page,))
    found = ground_value(document, "finance-2024-77")
    assert found.text == "ﬁnance-2024-77" and 80 < found.box[0] < 120 and found.box[2] < 420
    total = ground_value(document, 12800)
    assert total is not None and total.box[0] > 50
