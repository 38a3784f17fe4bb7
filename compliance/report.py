"""The compliance self-check: every control of MLPS 2.0 Level 3 (shared/MLPS3.md), checked live.

Four states, per evidence line and per control (docs/compliance-report.md):

- ``pass``: the evidence was computed now, from the running installation (its database, its
  settings as loaded, a live probe of its public address, its replicas, its processes);
- ``fail``: the evidence shows the control is not met, or the check could not look;
- ``manual``: the platform cannot see it; the line says what the assessor must look at, where;
- ``n/a`` (not applicable): evidence would be vacuous (nothing deleted yet, directory login off).

A control fails if any of its lines fails; else it is manual if any line is manual; else it
passes if any line passes; else it is not applicable. The checks live in
compliance/report_checks/ (a module per family), their live probes in compliance/report_probes.py. Every line is
written in English and carries its message id and values, so the page and the exports render
it in Chinese or English (the assessor's language is Chinese).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

PASS, FAIL, MANUAL, NOT_APPLICABLE = "pass", "fail", "manual", "n/a"
STATES = (PASS, FAIL, MANUAL, NOT_APPLICABLE)
MARKS = {PASS: "✓", FAIL: "✗", MANUAL: "☐", NOT_APPLICABLE: "–"}
STATE_LABELS = {
    PASS: gettext_noop("pass"),
    FAIL: gettext_noop("fail"),
    MANUAL: gettext_noop("manual"),
    NOT_APPLICABLE: gettext_noop("not applicable"),
}
LANGUAGES = ("zh-hans", "en")
FORMATS = ("md", "json", "html")


class Term(str):
    """A word inside an evidence value that is translated too ("none", "not configured")."""

    def localized(self) -> str:
        return gettext(str(self))


YES, NO = Term(gettext_noop("yes")), Term(gettext_noop("no"))


def _localized(value: Any) -> Any:
    return value.localized() if isinstance(value, Term) else value


class Evidence(str):
    """One evidence line: its English text (the str itself), its state, its message and values.

    A str, so that the English report reads as before; ``localized()`` renders it in the active
    language from the same message id and values.
    """

    state: str
    template: str
    params: dict[str, Any]

    def __new__(cls, state: str, template: str, /, **params: Any) -> Evidence:
        if state not in STATES:
            raise ValueError(f"unknown evidence state {state!r}")
        # yes/no, in the reader's language, rather than Python's True/False
        params = {name: (YES if value else NO) if isinstance(value, bool) else value for name, value in params.items()}
        line = super().__new__(cls, f"{MARKS[state]} {template.format(**params)}")
        line.state, line.template, line.params = state, template, params
        return line

    def localized(self) -> str:
        values = {name: _localized(value) for name, value in self.params.items()}
        return f"{MARKS[self.state]} {gettext(self.template).format(**values)}"


def line(ok: bool, template: str, /, **params: Any) -> Evidence:
    """A line that passes when ``ok`` (computed from what the check just looked at), else fails."""
    return Evidence(PASS if ok else FAIL, template, **params)


def manual(template: str, /, **params: Any) -> Evidence:
    return Evidence(MANUAL, template, **params)


def not_applicable(template: str, /, **params: Any) -> Evidence:
    return Evidence(NOT_APPLICABLE, template, **params)


def control_state(evidence: list[Evidence]) -> str:
    states = {item.state for item in evidence}
    for state in (FAIL, MANUAL, PASS):
        if state in states:
            return state
    return NOT_APPLICABLE


@dataclass
class ControlResult:
    control: str
    title: str
    status: str
    evidence: list[Evidence] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "control": self.control,
            "title": gettext(self.title),
            "status": self.status,
            "status_label": gettext(STATE_LABELS[self.status]),
            "evidence": [item.localized() for item in self.evidence],
            "lines": [{"state": item.state, "text": item.localized()} for item in self.evidence],
        }


@dataclass
class Report:
    generated_at: str
    profile: str
    results: list[ControlResult]

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    def as_dict(self) -> dict:
        return {
            "generated_at": self.generated_at,
            "profile": self.profile,
            "language": translation.get_language(),
            "summary": self.summary,
            "summary_labels": {gettext(STATE_LABELS[state]): count for state, count in self.summary.items()},
            "controls": [result.as_dict() for result in self.results],
        }


Check = Callable[[], list[Evidence]]
_CHECKS: list[tuple[str, str, Check]] = []


def control(control_id: str, title: str):
    """Register a check; ``title`` is an English message id (translated when rendered)."""

    def register(check: Check) -> Check:
        _CHECKS.append((control_id, title, check))
        return check

    return register


# The families of shared/MLPS3.md, in its order: the report lists controls this way.
FAMILIES = ("IA", "AC", "AU", "IP", "DI", "DC", "BR", "RI", "PI", "SM")


def registered_checks() -> list[tuple[str, str, Check]]:
    from compliance import report_checks  # noqa: F401  (registers every check on import)

    def order(item: tuple[str, str, Check]) -> tuple[int, int]:
        family, number = item[0].split("-")
        return FAMILIES.index(family), int(number)

    return sorted(_CHECKS, key=order)


COULD_NOT_RUN = gettext_noop("the check could not run: {error}")


def compliance_report_build() -> Report:
    from compliance.report_checks import build_started

    build_started()  # each live probe runs once per report, shared by the controls that cite it
    results = []
    for control_id, title, check in registered_checks():
        try:
            evidence = list(check())
        except Exception as exc:  # a check that cannot look is a failing check, with the reason
            evidence = [Evidence(FAIL, COULD_NOT_RUN, error=f"{type(exc).__name__}: {exc}")]
        if not evidence:
            evidence = [Evidence(FAIL, gettext_noop("the check returned no evidence"))]
        results.append(ControlResult(control_id, title, control_state(evidence), evidence))
    return Report(generated_at=timezone.now().isoformat(), profile=settings.PROFILE, results=results)


def report_language(requested: str | None) -> str:
    """One of LANGUAGES: the one asked for, else the installation's (Chinese by default)."""
    if requested in LANGUAGES:
        return requested
    default = translation.get_supported_language_variant(settings.LANGUAGE_CODE)
    return default if default in LANGUAGES else LANGUAGES[0]


def report_render(report: Report, fmt: str, *, language: str | None = None) -> str:
    with translation.override(report_language(language)):
        if fmt == "json":
            return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
        if fmt == "md":
            return _render_markdown(report)
        if fmt == "html":
            return render_to_string("compliance/report_export.html", {"report": report.as_dict()})
    raise ValueError(f"unknown report format {fmt!r}")


def _render_markdown(report: Report) -> str:
    data = report.as_dict()
    summary = ", ".join(f"{gettext(STATE_LABELS[state])} {count}" for state, count in data["summary"].items())
    lines = [
        f"# {gettext('Compliance self-check (MLPS 2.0 Level 3)')} — {report.generated_at} ({report.profile})",
        "",
        summary,
        "",
        f"| {gettext('Control')} | {gettext('Requirement')} | {gettext('Status')} | {gettext('Evidence')} |",
        "| --- | --- | --- | --- |",
    ]
    for result in data["controls"]:
        evidence = "<br>".join(item.replace("|", "\\|") for item in result["evidence"])
        lines.append(f"| {result['control']} | {result['title']} | {result['status_label']} | {evidence} |")
    return "\n".join(lines) + "\n"


def compliance_report_export(*, fmt: str, acting_user=None, language: str | None = None) -> tuple[Report, str, str]:
    """Build and render the report, record it (with its SHA-256) in the audit trail."""
    from compliance.events import EventType
    from compliance.services import audit_record

    report = compliance_report_build()
    language = report_language(language)
    text = report_render(report, fmt, language=language)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    audit_record(
        event_type=EventType.COMPLIANCE_REPORT,
        actor=acting_user,
        object_type="compliance.report",
        object_id=digest[:64],
        object_repr=f"MLPS self-check ({fmt}, {language})",
        details={
            "format": fmt,
            "language": language,
            "sha256": digest,
            "summary": report.summary,
            "failed": [r.control for r in report.results if r.status == FAIL],
            "manual": [r.control for r in report.results if r.status == MANUAL],
        },
    )
    return report, text, digest
