"""The usage pages: ``/d/<slug>/usage/`` for the department administrator (``Action.USAGE_VIEW``,
own department; the middleware has checked membership and opened the scope) and ``/usage/`` for
the system administrator (``Action.USAGE_VIEW_ALL``, every department, from the admin networks).

Counts only: requests and tokens by day, department and person (inference/usage/selectors.py).
Each page view and each CSV export is recorded (``usage.view``, ``usage.export``) with the range
and the department it covered, never any figure of a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.permissions import Action, requires
from assets.names import content_disposition
from compliance.events import EventType
from compliance.services import audit_record
from inference.usage.chart import usage_chart
from inference.usage.export import usage_csv
from inference.usage.forms import UsageAllFilterForm, UsageFilterForm
from inference.usage.selectors import UsagePeriod, UsageSummary, usage_summary


def _summary(form: UsageFilterForm, scope: Any) -> UsageSummary | None:
    chosen = form.range()
    if chosen is None:
        return None
    return usage_summary(
        period=UsagePeriod(start=chosen[0], end=chosen[1], zone=timezone.get_current_timezone()),
        department=scope,
    )


def _record(request: HttpRequest, event_type: EventType, *, form: UsageFilterForm, scope: Any) -> None:
    """The viewing or export, with the range and department it covered (never a figure)."""
    covered = scope.slug if scope is not None else "*"
    if form.is_valid():
        details = {
            "department": covered,
            "from": form.cleaned_data["start"].isoformat(),
            "to": form.cleaned_data["end"].isoformat(),
            "time_zone": str(timezone.get_current_timezone()),
        }
    else:
        details = {"department": covered, "filters_invalid": sorted(form.errors)}
    audit_record(
        event_type=event_type,
        actor=request.user,
        department=scope,
        object_type="usage",
        object_repr=covered,
        details=details,
    )


@dataclass(frozen=True)
class _Scope:
    """What one request covers: the form, the department (None: all) and the pages' names."""

    form: UsageFilterForm
    department: Any
    name: str
    page_url: str
    csv_url: str
    template: str


def _department_scope(request: HttpRequest) -> _Scope:
    department = request.department
    return _Scope(
        form=UsageFilterForm.for_query(request.GET),
        department=department,
        name=department.slug,
        page_url=reverse("department_usage:page", args=[department.slug]),
        csv_url=reverse("department_usage:csv", args=[department.slug]),
        template="usage/department.html",
    )


def _all_scope(request: HttpRequest) -> _Scope:
    form = UsageAllFilterForm.for_query(request.GET)
    department = form.cleaned_data.get("department") if form.is_valid() else None
    return _Scope(
        form=form,
        department=department,
        name=department.slug if department is not None else "all",
        page_url=reverse("usage:page"),
        csv_url=reverse("usage:csv"),
        template="usage/all.html",
    )


def _page(request: HttpRequest, scope: _Scope) -> HttpResponse:
    summary = _summary(scope.form, scope.department)
    _record(request, EventType.USAGE_VIEW, form=scope.form, scope=scope.department)
    query = request.GET.urlencode()
    return render(
        request,
        scope.template,
        {
            "department": getattr(request, "department", None),
            "membership": getattr(request, "membership", None),
            "form": scope.form,
            "summary": summary,
            "chart": usage_chart(summary.by_day) if summary is not None else None,
            "time_zone": str(timezone.get_current_timezone()),
            "page_url": scope.page_url,
            "csv_url": f"{scope.csv_url}?{query}" if query else scope.csv_url,
        },
        status=200 if summary is not None else 400,
    )


def _csv(request: HttpRequest, scope: _Scope) -> HttpResponse:
    summary = _summary(scope.form, scope.department)
    if summary is None:  # the page says what is wrong with the range, the input kept
        return _page(request, scope)
    _record(request, EventType.USAGE_EXPORT, form=scope.form, scope=scope.department)
    period = summary.period
    response = HttpResponse(usage_csv(summary), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition(f"usage-{scope.name}-{period.start}-{period.end}.csv")
    response["Cache-Control"] = "private, no-store"
    return response


@requires(Action.USAGE_VIEW)
@require_GET
def department_usage(request: HttpRequest, department_slug: str) -> HttpResponse:
    return _page(request, _department_scope(request))


@requires(Action.USAGE_VIEW)
@require_GET
def department_usage_csv(request: HttpRequest, department_slug: str) -> HttpResponse:
    return _csv(request, _department_scope(request))


@requires(Action.USAGE_VIEW_ALL)
@require_GET
def all_usage(request: HttpRequest) -> HttpResponse:
    return _page(request, _all_scope(request))


@requires(Action.USAGE_VIEW_ALL)
@require_GET
def all_usage_csv(request: HttpRequest) -> HttpResponse:
    return _csv(request, _all_scope(request))
