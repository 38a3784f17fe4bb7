"""Forms of the portal's extraction pages: running a template on files, a reviewer's correction
of one field, and the rows of a template's rules editor."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from inference.extraction.services import OPERATORS, rules_validate

NO_FILE_CHOSEN = _("Choose at least one file.")
ONE_FILE_ONLY = _("An extraction reads one file; choose one, or start a batch for several.")
VALUE_NOT_NUMBER = _("Enter a number, e.g. 12800.00.")
VALUE_NOT_WHOLE = _("Enter a whole number, e.g. 3.")
VALUE_NOT_JSON = _("Enter JSON for this field (a list or an object), e.g. %(example)s.")
VALUE_NOT_BOOLEAN = _("Enter true or false.")
RULE_NEEDS_NUMBER = _("This comparison needs a number.")
RULE_NEEDS_PATTERN = _("Not a valid regular expression.")
RULE_NEEDS_FIELD = _("Name the field, e.g. total_amount or anomalies[*].severity.")
RULE_NEEDS_OUTCOME = _("Name the outcome the calling system acts on, e.g. second_approver.")
RULE_NEEDS_OPERATOR = _("Choose an operator.")
RULE_PROBLEM = _("This rule is not usable: %(problem)s")
RULE_ROWS_MAX = 50
_RULE_INDEX = re.compile(r"^Rule (\d+): ")
# A number as a person types one: sign, digits (thousands commas allowed), a decimal point. No
# exponent and no Infinity/NaN: Decimal("1e999999999") parses, and int() of it would not finish.
# Unicode digits on purpose (full-width ones from a Chinese input method): Decimal reads them all.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3}){1,9}|\d{1,30})?(?:\.\d{0,30})?")


def plain_number(text: str) -> int | float | None:
    """``text`` as a number (an int when written without a point), or None when it is not a plain
    decimal number of at most 30 digits each side of the point."""
    text = text.strip()
    if not _PLAIN_NUMBER.fullmatch(text) or not any(ch.isdigit() for ch in text):
        return None
    number = Decimal(text.replace(",", ""))
    return int(number) if "." not in text else float(number)


# Operators in the editor's list, with what each means (the list rules_validate accepts).
OPERATOR_LABELS = {
    "gt": _("greater than"),
    "gte": _("at least"),
    "lt": _("less than"),
    "lte": _("at most"),
    "eq": _("equals"),
    "ne": _("differs from"),
    "matches": _("matches the pattern"),
    "not_matches": _("does not match the pattern"),
    "contains": _("contains"),
    "in": _("is one of (comma-separated)"),
    "missing": _("is missing or empty"),
    "grounded": _("is found in the document"),
}


def operator_choices() -> list[tuple[str, str]]:
    """The operators ``rules_validate`` accepts, each with its words (its name where it has none)."""
    return [(op, str(OPERATOR_LABELS.get(op, op))) for op in OPERATORS]


class ExtractionRunForm(forms.Form):
    template = forms.ChoiceField(label=_("Template"))
    assets = forms.MultipleChoiceField(label=_("Files"), required=False)
    # A loaded model's name (the page offers those the department may use); empty: the department's
    # default. Checked by the service, which records a refusal (a name from a stale page included).
    model = forms.CharField(label=_("Model"), required=False, max_length=200)

    def __init__(self, data=None, *, templates, assets, batch: bool = False, **kwargs):
        super().__init__(data, **kwargs)
        self.batch = batch
        self.fields["template"].choices = [(t.slug, t.name) for t in templates]
        self.fields["assets"].choices = [(str(a.pk), a.original_name) for a in assets]

    def clean_assets(self):
        chosen = self.cleaned_data["assets"]
        if not chosen:
            raise forms.ValidationError(NO_FILE_CHOSEN)
        if not self.batch and len(chosen) > 1:
            raise forms.ValidationError(ONE_FILE_ONLY)
        return chosen


def field_type(schema: dict | None, path: str) -> str:
    """The JSON type the template's schema gives a top-level field ("string" when unknown)."""
    properties = (schema or {}).get("properties") or {}
    kind = (properties.get(path) or {}).get("type", "string")
    return kind if isinstance(kind, str) else "string"


def value_text(value: Any) -> str:
    """A stored value as the reviewer edits it: text as is, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2 if isinstance(value, dict | list) else None)


class CorrectionForm(forms.Form):
    field_path = forms.ChoiceField(label=_("Field"))
    value = forms.CharField(
        label=_("Corrected value"), required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 2})
    )
    note = forms.CharField(label=_("Note (optional)"), required=False, max_length=1000)

    def __init__(self, data=None, *, paths: list[str], schema: dict | None, **kwargs):
        super().__init__(data, **kwargs)
        self.schema = schema
        self.fields["field_path"].choices = [(path, path) for path in paths]

    def clean(self):
        cleaned = super().clean()
        path = cleaned.get("field_path")
        if path is None or "value" not in cleaned:
            return cleaned
        text = cleaned["value"].strip()
        kind = field_type(self.schema, path)
        if kind in ("number", "integer"):
            number = plain_number(text)
            if number is None:
                self.add_error("value", VALUE_NOT_NUMBER)
                return cleaned
            if kind == "integer" and number != int(number):
                self.add_error("value", VALUE_NOT_WHOLE)
                return cleaned
            cleaned["value"] = int(number) if kind == "integer" or number == int(number) else number
        elif kind in ("array", "object"):
            try:
                value = json.loads(text or ("[]" if kind == "array" else "{}"))
            except ValueError:
                value = None
            if not isinstance(value, list if kind == "array" else dict):
                example = '[{"type": "rust", "severity": "low"}]' if kind == "array" else '{"name": "…"}'
                self.add_error("value", forms.ValidationError(VALUE_NOT_JSON, params={"example": example}))
                return cleaned
            cleaned["value"] = value
        elif kind == "boolean":
            if text.lower() not in ("true", "false"):
                self.add_error("value", VALUE_NOT_BOOLEAN)
                return cleaned
            cleaned["value"] = text.lower() == "true"
        else:
            cleaned["value"] = text
        return cleaned


# --- the rules editor ------------------------------------------------------------------------------


@dataclass
class RuleRow:
    field: str = ""
    op: str = ""
    value: str = ""
    outcome: str = ""
    message: str = ""
    errors: list[str] = dataclass_field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any((self.field.strip(), self.value.strip(), self.outcome.strip(), self.message.strip()))


def rule_rows_from_rules(rules: list) -> list[RuleRow]:
    rows = []
    for rule in rules or []:
        if not isinstance(rule, dict):
            continue
        value = rule.get("value")
        if isinstance(value, list):
            text = ", ".join(str(item) for item in value)
        elif value is None:
            text = ""
        else:
            text = str(value)
        rows.append(
            RuleRow(
                field=str(rule.get("field", "")),
                op=str(rule.get("op", "")),
                value=text,
                outcome=str(rule.get("outcome", "")),
                message=str(rule.get("message", "")),
            )
        )
    return rows


def rule_rows_from_post(data) -> list[RuleRow]:
    """The editor's rows as posted (parallel lists ``rule_field``, ``rule_op``…); empty rows dropped."""
    names = ("field", "op", "value", "outcome", "message")
    columns = {name: data.getlist(f"rule_{name}") for name in names}
    count = min(max((len(values) for values in columns.values()), default=0), RULE_ROWS_MAX)
    rows = []
    for index in range(count):
        row = RuleRow(**{name: (columns[name][index] if index < len(columns[name]) else "").strip() for name in names})
        if not row.empty:
            rows.append(row)
    return rows


def _rule_of(row: RuleRow) -> dict:
    rule: dict[str, Any] = {"field": row.field, "op": row.op}
    if row.outcome or row.op != "grounded":  # a grounded rule has an outcome of its own
        rule["outcome"] = row.outcome
    if row.op == "in":
        rule["value"] = [plain_number(part) if plain_number(part) is not None else part for part in _split(row.value)]
    elif row.op in ("gt", "gte", "lt", "lte"):
        number = plain_number(row.value)
        rule["value"] = number if number is not None else row.value
    elif row.op in ("eq", "ne"):
        number = plain_number(row.value)
        rule["value"] = number if number is not None else row.value
    elif row.op not in ("missing", "grounded"):
        rule["value"] = row.value
    if row.message:
        rule["message"] = row.message
    return rule


def _split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,，]", text) if part.strip()]


def rules_from_rows(rows: list[RuleRow]) -> tuple[list[dict], bool]:
    """(the rules, whether they are all usable): each row's problems go on the row, in the
    reader's language, with ``rules_validate`` (the extraction's own check) as the last word."""
    rules = [_rule_of(row) for row in rows]
    for row, rule in zip(rows, rules, strict=True):
        if not row.field:
            row.errors.append(str(RULE_NEEDS_FIELD))
        if row.op not in OPERATORS:
            row.errors.append(str(RULE_NEEDS_OPERATOR))
        if not row.outcome and row.op != "grounded":
            row.errors.append(str(RULE_NEEDS_OUTCOME))
        if row.op in ("gt", "gte", "lt", "lte") and not isinstance(rule.get("value"), int | float):
            row.errors.append(str(RULE_NEEDS_NUMBER))
        if row.op in ("matches", "not_matches"):
            try:
                re.compile(row.value)
            except re.error:
                row.errors.append(str(RULE_NEEDS_PATTERN))
    for problem in rules_validate(rules):
        match = _RULE_INDEX.match(problem)
        if match is None:
            continue
        row = rows[int(match.group(1))]
        if not row.errors:  # already said in the reader's words
            row.errors.append(str(RULE_PROBLEM) % {"problem": problem[match.end() :]})
    return rules, not any(row.errors for row in rows)
