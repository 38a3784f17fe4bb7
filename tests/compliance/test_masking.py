"""mask_identifiers: the identifiers that must never reach the trail in clear."""

from __future__ import annotations

import pytest

from compliance.masking import mask_identifiers, masked_preview


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("身份证 11010519491231002X 请核对", "身份证 110***********002X 请核对"),
        ("id:440301199001011234.", "id:440***********1234."),
        ("电话13812345678，谢谢", "电话138****5678，谢谢"),
        ("call +86 13912345678 now", "call +86 139****5678 now"),
        ("卡号 6222 0212 3456 7890 123 到账", "卡号 6222 **** **** ***0 123 到账"),
        ("card 6222021234567890", "card 6222********7890"),
        ("card 6222-0212-3456-7890", "card 6222-****-****-7890"),
    ],
)
def test_identifiers_are_masked(text, expected):
    assert mask_identifiers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "订单 20240101 金额 12345.67",  # short numbers stay
        "version 12345678901",  # 11 digits that are not a mobile number (starts with 12)
        "sha 0123456789abcdef0123456789abcdef",  # digits inside a longer token
        "",
    ],
)
def test_other_text_is_left_alone(text):
    assert mask_identifiers(text) == text


def test_preview_masks_before_truncating():
    preview = masked_preview("x" * 195 + " 13812345678 tail", limit=200)
    assert "13812345678" not in preview and len(preview) == 200 and preview.endswith("…")
