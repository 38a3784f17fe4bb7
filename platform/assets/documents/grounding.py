"""Grounding: where on which page an extracted value is written, or that it is written nowhere.

``ground_value(document, value)`` looks a value up in a document's text layer and answers a
``Grounding`` (page, box, the text found, the text's source) or ``None`` (*ungrounded*: the value is
not in the document). ``ground_fields`` does it for every leaf of an extracted object.

Both sides are normalised before they are compared:

* Unicode NFKC and case folding: full-width digits, letters and signs become ASCII ("１２３" = "123",
  "￥" = "¥", "：" = ":"), "INV" = "inv".
* **Numbers match as numbers**, whole tokens only: currency signs and words (¥ ￥ $ € £ 元 RMB CNY
  USD) and thousands separators are ignored, so 1,234.56 = 1234.56 = ¥1,234.56 = 1234.560 =
  "RMB 1,234.56" (and OCR's "1.234.56"), while 1234.5 never grounds on 11234.50 nor on 1234.51.
  A number next to other digits, or after letters other than a currency word or "No", is another
  token. A string of digits with a leading zero ("00123") is an identifier and matches as text.
* **Dates match as dates**: 2024-01-05 = 2024/1/5 = 2024.01.05 = 2024年1月5日 = Jan 5, 2024 =
  5 January 2024.
* **Text** matches ignoring whitespace (OCR splits and joins words), also across two boxes of one
  line: the lines of a page are grouped into visual rows (boxes that overlap vertically), read left to
  right, so "¥" "1,234" ".56" in three boxes is one value. A value that starts or ends with a Latin
  letter or digit must start or end a token ("INV-77" does not ground inside "XINV-77").

The box answered is the union, on one row, of the parts of the boxes the match covers (a line's box
is narrowed to the matched characters in proportion to their widths: a CJK character counts twice
a Latin one), in the coordinates of the page (``PageText.width``/``height``).

**Short values never ground by accident.** A value is *distinctive* when it is a date, a number of
at least 4 digits (integer digits plus significant decimals: 1234, 12.5 → 3 digits is short), or
text whose Latin letters and digits plus 1.5 × its CJK characters reach 4 (3 CJK characters, or 4
Latin ones). A distinctive value grounds at its first whole-token occurrence (preferring one next
to the field's label, then the preferred pages). A *short* value ("1", "是", "13%", "A1", "12") grounds
only when the field's label is known **and** the value occurs exactly once next to a label
occurrence — on the label's row to its right, or on the row just below it, under it — and never
otherwise. Booleans, empty strings and nulls are not looked up.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from assets.documents.pages import DocumentText, Line, PageText

MIN_DISTINCTIVE_SCORE = 4.0  # Latin letters/digits + 1.5 × CJK characters
MIN_DISTINCTIVE_DIGITS = 4
# A row's boxes further apart than this (in row heights) are separate columns: no value spans them.
COLUMN_GAP = 2.5
_COLUMN_BREAK = " | "

_CURRENCY = re.compile(r"(?:rmb|cny|usd|eur|hkd|[¥$€£元])")
_NUMBER_VALUE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
# In a row (spaced, normalised): one space may sit on either side of a separator (OCR splits).
# OCR reads a thousands comma as a dot now and then: "1.432.35" is 1432.35 (but "1.432" is 1.432).
_NUMBER_TOKEN = re.compile(r"(?<!\d)(?<!\d[.,])(?:\d{1,3}(?: ?[,.] ?\d{3})+|\d+)(?: ?\. ?\d+)?(?!\d)")
# Letters that may stand right before a number without making it part of a word.
_NUMBER_PREFIXES = {"rmb", "cny", "usd", "eur", "hkd", "no", "y"}
_DATE = re.compile(r"(?<!\d)(\d{4}) ?[-/.年] ?(\d{1,2}) ?[-/.月] ?(\d{1,2})(?: ?日)?(?!\d)")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_MDY = re.compile(rf"(?<![a-z]){_MONTH} ?(\d{{1,2}}),? ?(\d{{4}})(?!\d)")
_DATE_DMY = re.compile(rf"(?<!\d)(\d{{1,2}}) ?{_MONTH},? ?(\d{{4}})(?!\d)")
_EDGE_PUNCTUATION = " \t\r\n.,;:!?'\"()[]{}<>|·、。，；：！？“”‘’（）【】《》"
_LABEL_SPLIT = re.compile(r"[,;:()\[\]/|、，；：（）]|e\.g\.|\s{2,}")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]{2,}")


@dataclass(frozen=True)
class Grounding:
    page: int  # 1-based
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the page image's pixels
    text: str  # the text found (business text: never store it unsealed)
    source: str  # TextSource of the page: pdf, ocr, office


# --- normalisation ------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC, case folded, whitespace runs as one space: the form both sides are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_WHITESPACE = re.compile(r"\s")


def _normalise_line(text: str) -> str:
    """``_normalise_char`` of every character at once (NFKC may join or split characters: the
    caller checks that the length held)."""
    if text.isascii():
        return _WHITESPACE.sub(" ", text.lower())
    if any(unicodedata.category(char) == "Cf" for char in text):
        return ""  # zero-width characters are dropped: character by character
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=8192)
def _normalise_char(char: str) -> str:
    if char.isspace():
        return " "
    if unicodedata.category(char) == "Cf":  # zero-width joiners, BOMs: not text
        return ""
    return unicodedata.normalize("NFKC", char).casefold()


def _is_cjk(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F") and char.isalnum()


def _is_latin_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


@functools.lru_cache(maxsize=8192)
def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    kind: str  # number, date, text
    number: Decimal | None = None
    date: tuple[int, int, int] | None = None
    text: str = ""  # normalised, without whitespace
    distinctive: bool = False


def _digits_score(number: Decimal) -> int:
    integer, _, decimals = format(abs(number), "f").partition(".")
    return len(integer.lstrip("0")) + len(decimals.rstrip("0"))


def _date_of(text: str) -> tuple[int, int, int] | None:
    for pattern, order in ((_DATE, "ymd"), (_DATE_MDY, "mdy"), (_DATE_DMY, "dmy")):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        parts = dict(zip(order, match.groups(), strict=True))
        month = parts["m"]
        month_number = _MONTHS.index(month[:3]) + 1 if month[:3] in _MONTHS else int(month)
        date = (int(parts["y"]), month_number, int(parts["d"]))
        if 1 <= date[1] <= 12 and 1 <= date[2] <= 31:
            return date
    return None


def _value_of(value: Any) -> _Value | None:
    """The comparable form of a scalar value, or None when it cannot be looked up."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        if not number.is_finite():
            return None
        return _Value("number", number=abs(number), distinctive=_digits_score(number) >= MIN_DISTINCTIVE_DIGITS)
    if not isinstance(value, str):
        return None
    text = normalise(value).strip(_EDGE_PUNCTUATION)
    if not text:
        return None
    date = _date_of(text)
    if date is not None:
        return _Value("date", date=date, distinctive=True)
    bare = _CURRENCY.sub("", text).replace(" ", "")
    is_identifier = len(bare) > 1 and bare.startswith("0") and not bare.startswith("0.")
    if bare and _NUMBER_VALUE.fullmatch(bare) and not is_identifier:
        number = abs(Decimal(bare.replace(",", "")))
        return _Value("number", number=number, distinctive=_digits_score(number) >= MIN_DISTINCTIVE_DIGITS)
    compact = text.replace(" ", "")
    score = sum(1.0 for c in compact if _is_latin_alnum(c)) + sum(1.5 for c in compact if _is_cjk(c))
    return _Value("text", text=compact, distinctive=score >= MIN_DISTINCTIVE_SCORE)


# --- the document's rows ----------------------------------------------------------------------------


@dataclass
class _Row:
    page: PageText
    index: int  # the row's position on its page, top to bottom
    lines: list[Line]
    text: str  # normalised, spaced; the lines joined by a space (or a column break)
    origin: list[tuple[int, int] | None]  # per char of ``text``: (line, char of the line's text)
    compact: str  # ``text`` without whitespace
    compact_at: list[int]  # per char of ``compact``: its index in ``text``
    numbers: list | None = None  # its number and date tokens, read once (``_number_tokens``)
    dates: list | None = None

    def box(self, start: int, end: int) -> tuple[float, float, float, float] | None:
        """The union of the parts of the row's boxes that ``text[start:end]`` covers."""
        spans: dict[int, list[int]] = {}
        for origin in self.origin[start:end]:
            if origin is not None:
                spans.setdefault(origin[0], []).append(origin[1])
        boxes = [_narrowed(self.lines[line], min(chars), max(chars)) for line, chars in spans.items()]
        if not boxes:
            return None
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )

    def original(self, start: int, end: int) -> str:
        parts: dict[int, list[int]] = {}
        for origin in self.origin[start:end]:
            if origin is not None:
                parts.setdefault(origin[0], []).append(origin[1])
        return " ".join(self.lines[line].text[min(chars) : max(chars) + 1] for line, chars in parts.items())


def _narrowed(line: Line, first: int, last: int) -> tuple[float, float, float, float]:
    widths = [_char_width(char) for char in line.text]
    total = sum(widths) or 1
    x0, y0, x1, y1 = line.box
    left = x0 + (x1 - x0) * sum(widths[:first]) / total
    right = x0 + (x1 - x0) * sum(widths[: last + 1]) / total
    return (left, y0, right, y1)


def _rows_of(page: PageText) -> list[_Row]:
    """The page's lines grouped into visual rows: a line joins a row it overlaps vertically by at
    least half the smaller height; a row reads left to right."""
    groups: list[list[Line]] = []
    for line in sorted((line for line in page.lines if line.text.strip()), key=lambda line: line.box[1]):
        y0, y1 = line.box[1], line.box[3]
        for group in reversed(groups[-3:]):
            top, bottom = min(g.box[1] for g in group), max(g.box[3] for g in group)
            overlap = min(y1, bottom) - max(y0, top)
            if overlap >= 0.5 * max(1e-6, min(y1 - y0, bottom - top)):
                group.append(line)
                break
        else:
            groups.append([line])
    rows = []
    for index, group in enumerate(groups):
        group.sort(key=lambda line: line.box[0])
        text: list[str] = []
        origin: list[tuple[int, int] | None] = []
        for number, line in enumerate(group):
            if number:
                previous = group[number - 1]
                height = max(1.0, min(line.box[3] - line.box[1], previous.box[3] - previous.box[1]))
                separator = _COLUMN_BREAK if line.box[0] - previous.box[2] > COLUMN_GAP * height else " "
                text.extend(separator)
                origin.extend([None] * len(separator))
            whole = _normalise_line(line.text)
            if len(whole) == len(line.text):  # one character each (nearly always): aligned as is
                text.append(whole)
                origin.extend((number, position) for position in range(len(whole)))
                continue
            for position, char in enumerate(line.text):
                for piece in _normalise_char(char):
                    text.append(piece)
                    origin.append((number, position))
        joined = "".join(text)
        compact_at = [i for i, char in enumerate(joined) if char != " "]
        rows.append(
            _Row(
                page=page,
                index=index,
                lines=group,
                text=joined,
                origin=origin,
                compact="".join(joined[i] for i in compact_at),
                compact_at=compact_at,
            )
        )
    return rows


# --- occurrences ----------------------------------------------------------------------------------


def _number_tokens(row: _Row) -> list[tuple[int, int, Decimal]]:
    if row.numbers is None:
        row.numbers = list(_read_number_tokens(row))
    return row.numbers


def _read_number_tokens(row: _Row) -> Iterator[tuple[int, int, Decimal]]:
    dates = [m.span() for m in _DATE.finditer(row.text)]
    for match in _NUMBER_TOKEN.finditer(row.text):
        start, end = match.span()
        if any(s < end and start < e for s, e in dates):
            continue
        if len(match.group()) > 1 and match.group()[0] == "0" and match.group()[1].isdigit():
            continue  # "007", "04419876": an identifier, matched as text only
        letters = re.search(r"[a-z]+$", row.text[:start])  # letters right before: "a1234" is a word
        if letters and letters.group() not in _NUMBER_PREFIXES:
            continue
        written = re.sub(r"[ ,]", "", match.group())
        if written.count(".") > 1:
            head, _, tail = written.rpartition(".")
            written = head.replace(".", "") + "." + tail
        try:
            yield start, end, Decimal(written)
        except InvalidOperation:
            continue


def _date_tokens(row: _Row) -> list[tuple[int, int, tuple[int, int, int]]]:
    if row.dates is None:
        row.dates = list(_read_date_tokens(row))
    return row.dates


def _read_date_tokens(row: _Row) -> Iterator[tuple[int, int, tuple[int, int, int]]]:
    for pattern in (_DATE, _DATE_MDY, _DATE_DMY):
        for match in pattern.finditer(row.text):
            date = _date_of(match.group())
            if date is not None:
                yield match.start(), match.end(), date


def _boundary_ok(text: str, start: int, end: int, value: str) -> bool:
    """A value that starts (ends) with a Latin letter or digit must start (end) a token."""
    if _is_latin_alnum(value[0]) and start > 0:
        previous = text[start - 1]
        if _is_latin_alnum(previous):
            return False
        if value[0].isdigit() and previous in ".," and start > 1 and text[start - 2].isdigit():
            return False
    if _is_latin_alnum(value[-1]) and end < len(text):
        following = text[end]
        if _is_latin_alnum(following):
            return False
        if value[-1].isdigit() and following in ".," and end + 1 < len(text) and text[end + 1].isdigit():
            return False
    return True


def _text_occurrences(row: _Row, needle: str) -> Iterator[tuple[int, int]]:
    start = row.compact.find(needle)
    while start != -1:
        first, last = row.compact_at[start], row.compact_at[start + len(needle) - 1]
        if _boundary_ok(row.text, first, last + 1, needle):
            yield first, last + 1
        start = row.compact.find(needle, start + 1)


def _occurrences(row: _Row, value: _Value) -> Iterator[tuple[int, int]]:
    if value.kind == "number":
        yield from ((s, e) for s, e, number in _number_tokens(row) if number == value.number)
    elif value.kind == "date":
        yield from ((s, e) for s, e, date in _date_tokens(row) if date == value.date)
    else:
        yield from _text_occurrences(row, value.text)


# --- labels -----------------------------------------------------------------------------------------


def labels_of(name: str, schema: dict | None = None) -> list[str]:
    """The words a field is labelled with on a page: its name ("total_amount" → "total amount")
    and its schema description's first phrase and Chinese words ("价税合计", "金额 (不含税)" → "金额")."""
    labels = [name.replace("_", " ").replace("-", " ").strip()] if name and not name.isdigit() else []
    description = (schema or {}).get("description") if isinstance(schema, dict) else None
    if isinstance(description, str) and description.strip():
        first = _LABEL_SPLIT.split(description.strip())[0].strip()
        if first:
            labels.append(first)
            labels.extend(_CJK_RUN.findall(first))
    title = (schema or {}).get("title") if isinstance(schema, dict) else None
    if isinstance(title, str) and title.strip():
        labels.append(title.strip())
    seen, unique = set(), []
    for label in labels:
        key = normalise(label).replace(" ", "")
        if len(key) >= 2 and key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


@dataclass(frozen=True)
class _Candidate:
    row: _Row
    start: int
    end: int


class DocumentIndex:
    """A document's rows, built once and asked for many values (``ground_fields``)."""

    def __init__(self, document: DocumentText, *, pages: Sequence[int] = ()) -> None:
        preferred = {number: rank for rank, number in enumerate(pages)}
        usable = [page for page in document.pages if page.usable and page.lines]
        usable.sort(key=lambda page: (preferred.get(page.number, len(preferred)), page.number))
        self.rows = [row for page in usable for row in _rows_of(page)]
        self._spots: dict[tuple[str, ...], dict] = {}

    def _label_spots(self, labels: tuple[str, ...]) -> dict[tuple[int, int], list[tuple[_Row, int, int]]]:
        """Where the labels are written, by (page, row index); asked once per set of labels."""
        spots = self._spots.get(labels)
        if spots is None:
            spots = {}
            for label in labels:
                for row in self.rows:
                    for start, end in _text_occurrences(row, label):
                        spots.setdefault((row.page.number, row.index), []).append((row, start, end))
            self._spots[labels] = spots
        return spots

    @staticmethod
    def _near(candidate: _Candidate, spots) -> bool:
        """On a label's row to its right, or on the row below it, under it."""
        row = candidate.row
        for _label_row, _start, label_end in spots.get((row.page.number, row.index), ()):
            if candidate.start >= label_end:
                return True
        above = spots.get((row.page.number, row.index - 1), ())
        box = row.box(candidate.start, candidate.end) if above else None
        for label_row, label_start, label_end in above if box is not None else ():
            label_box = label_row.box(label_start, label_end)
            if label_box is None:
                continue
            width = label_box[2] - label_box[0]
            if box[0] < label_box[2] + width and box[2] > label_box[0] - width:
                return True
        return False

    def ground(self, value: Any, *, labels: Sequence[str] = ()) -> Grounding | None:
        parsed = _value_of(value)
        if parsed is None:
            return None
        candidates = [_Candidate(row, start, end) for row in self.rows for start, end in _occurrences(row, parsed)]
        if not candidates:
            return None
        if parsed.distinctive and len(candidates) == 1:
            chosen = candidates[0]
        else:
            spots = self._label_spots(tuple(labels)) if labels else {}
            near = [candidate for candidate in candidates if spots and self._near(candidate, spots)]
            if parsed.distinctive:
                chosen = (near or candidates)[0]
            elif len(near) == 1:
                chosen = near[0]
            else:
                return None  # a short value: only its one occurrence next to its label counts
        box = chosen.row.box(chosen.start, chosen.end)
        if box is None:
            return None
        return Grounding(
            page=chosen.row.page.number,
            box=tuple(round(v, 1) for v in box),
            text=chosen.row.original(chosen.start, chosen.end),
            source=str(chosen.row.page.source),
        )


def ground_value(
    document: DocumentText, value: Any, *, labels: Sequence[str] = (), pages: Sequence[int] = ()
) -> Grounding | None:
    """Where ``value`` (a scalar) is written in the document, or None (ungrounded). ``labels``: the
    field's labels in normalised form (``labels_of``), needed for short values; ``pages``: pages
    to prefer when the value occurs more than once (e.g. those the model was shown)."""
    return DocumentIndex(document, pages=pages).ground(value, labels=labels)


def _leaves(
    value: Any, schema: dict | None, path: str, name: str, *, declared_only: bool
) -> Iterator[tuple[str, Any, list[str]]]:
    if isinstance(value, dict):
        properties = (schema.get("properties") if isinstance(schema, dict) else None) or {}
        for key, item in value.items():
            # With a schema, only the keys it declares: a path is kept in the clear beside the
            # sealed result, and a key the model made up is content read from the file.
            if declared_only and key not in properties:
                continue
            child_path = f"{path}.{key}" if path else str(key)
            yield from _leaves(item, properties.get(key), child_path, str(key), declared_only=declared_only)
    elif isinstance(value, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        for index, item in enumerate(value):
            yield from _leaves(item, items, f"{path}[{index}]", name, declared_only=declared_only)
    elif value is not None and not isinstance(value, bool) and value != "":
        yield path, value, labels_of(name, schema)


def ground_fields(
    document: DocumentText, value: Any, *, schema: dict | None = None, pages: Sequence[int] = ()
) -> dict[str, Grounding | None]:
    """``ground_value`` for every leaf of an extracted object, keyed by path (``seller.name``,
    ``anomalies[0].type``); labels come from the schema's property names and descriptions.
    Nulls, booleans and empty strings are left out (nothing to look for). With a schema, only the
    paths it declares are grounded (an object key it does not name is left out)."""
    index = DocumentIndex(document, pages=pages)
    leaves = _leaves(value, schema, "", "", declared_only=schema is not None)
    return {path: index.ground(leaf, labels=labels) for path, leaf, labels in leaves}


__all__ = ["DocumentIndex", "Grounding", "ground_fields", "ground_value", "labels_of", "normalise"]
