"""Masking of personal identifiers in previews written to the trail (PI-2).

``mask_identifiers(text)`` hides 居民身份证 numbers (18 characters with a plausible birth date),
mainland mobile numbers (11 digits starting 13-19) and bank card numbers (16-19 digits, possibly
grouped by spaces or hyphens), keeping just enough to recognise a value the auditor already
knows. It over-masks rather than under-masks: any long digit run that looks like a card goes.
Inference and other features call it before a prompt preview enters ``details``.
"""

from __future__ import annotations

import re

MASK = "*"

_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])"
    r"(\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx])"
    r"(?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<![0-9A-Za-z])((?:\+?86[- ]?)?1[3-9]\d{9})(?![0-9A-Za-z])")
_BANK_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{4}(?:[ -]?\d){12,15})(?![0-9A-Za-z])")


def _keep_ends(value: str, head: int, tail: int) -> str:
    """Mask every digit except the first ``head`` and last ``tail``; separators stay."""
    positions = [index for index, char in enumerate(value) if char.isdigit() or char in "Xx"]
    hidden = set(positions[head : len(positions) - tail])
    return "".join(MASK if index in hidden else char for index, char in enumerate(value))


def mask_id_card(match: re.Match) -> str:
    return _keep_ends(match.group(1), 3, 4)


def mask_mobile(match: re.Match) -> str:
    value = match.group(1)
    return value[:-8] + MASK * 4 + value[-4:]


def mask_bank_card(match: re.Match) -> str:
    return _keep_ends(match.group(1), 4, 4)


def mask_identifiers(text: str) -> str:
    """``text`` with identity-card, mobile and bank-card numbers masked."""
    if not text:
        return text
    text = _ID_CARD.sub(mask_id_card, text)
    text = _BANK_CARD.sub(mask_bank_card, text)
    return _MOBILE.sub(mask_mobile, text)


def masked_preview(text: str, limit: int = 200) -> str:
    """A short, masked preview of free text (a prompt) for the trail; masking happens first."""
    masked = mask_identifiers(text or "")
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"
