"""Reads of usage: the ``inference.call`` entries of a period, summed by day, department and person.

Exact and cheap: the database counts the entries and sums the token counts in their details
(``prompt_tokens``, ``completion_tokens``: the figures ``inference.model_calls`` records for every
channel), grouped by the local day, department and actor, using the trail's
``(department_id, event_type, timestamp)`` index. Nothing but counts is read: no preview, no
prompt hash, no object. A call refused before the model was reached (rate limit, busy) counts as
a request with no tokens; ``failed`` counts the calls whose outcome was not a success.

Entries still waiting to be chained (committed a moment ago; the sealer chains them within about
100 ms) appear at the next look.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django.db.models import Count, IntegerField, JSONField, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate

from compliance.events import ActorType, EventType, Outcome
from compliance.models import AuditEntry


@dataclass(frozen=True)
class UsagePeriod:
    """Whole days, ``start`` to ``end`` inclusive, in ``zone`` (the platform's TIME_ZONE)."""

    start: date
    end: date
    zone: tzinfo

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """[the first day's midnight, the midnight after the last day) in ``zone``."""
        return (
            datetime.combine(self.start, time.min, tzinfo=self.zone),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.zone),
        )


@dataclass
class UsageFigures:
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: UsageFigures) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass(frozen=True)
class UsageRow:
    """One day of one actor (a person or an API key) in one department."""

    day: date
    department_id: int | None
    department_slug: str
    actor_type: str
    actor_id: str
    actor_name: str
    figures: UsageFigures

    @property
    def is_api_key(self) -> bool:
        return self.actor_type == ActorType.API_KEY


@dataclass(frozen=True)
class UsageTotal:
    """The figures of one department or one actor over the whole period."""

    department_slug: str
    actor_type: str
    actor_name: str
    figures: UsageFigures

    @property
    def is_api_key(self) -> bool:
        return self.actor_type == ActorType.API_KEY


@dataclass
class UsageSummary:
    period: UsagePeriod
    rows: list[UsageRow]
    total: UsageFigures = field(default_factory=UsageFigures)
    by_day: list[tuple[date, UsageFigures]] = field(default_factory=list)  # every day, zeros included
    by_department: list[UsageTotal] = field(default_factory=list)  # most tokens first
    by_actor: list[UsageTotal] = field(default_factory=list)  # most tokens first


def usage_rows(*, period: UsagePeriod, department: Any = None) -> list[UsageRow]:
    """The period's figures per (day, department, actor), oldest day first. ``department``: one
    department (a Department or its id), or None for every department — the caller has asked the
    policy layer which of the two the requester may see."""
    start, end = period.bounds()
    entries = AuditEntry.objects.filter(event_type=EventType.INFERENCE, timestamp__gte=start, timestamp__lt=end)
    if department is not None:
        entries = entries.filter(department_id=getattr(department, "pk", department))
    details = Cast("details", JSONField())  # stored as canonical JSON text (compliance.models)
    grouped = (
        entries.annotate(
            day=TruncDate("timestamp", tzinfo=period.zone),
            prompt=Cast(KeyTextTransform("prompt_tokens", details), IntegerField()),
            completion=Cast(KeyTextTransform("completion_tokens", details), IntegerField()),
        )
        .values("day", "department_id", "department_slug", "actor_type", "actor_id", "actor_name")
        .annotate(
            requests=Count("sequence"),
            failed=Count("sequence", filter=~Q(outcome=Outcome.SUCCESS)),
            prompt_tokens=Sum("prompt"),
            completion_tokens=Sum("completion"),
        )
        .order_by("day", "department_slug", "actor_name", "actor_type", "actor_id")
    )
    return [
        UsageRow(
            day=row["day"],
            department_id=row["department_id"],
            department_slug=row["department_slug"],
            actor_type=row["actor_type"],
            actor_id=row["actor_id"],
            actor_name=row["actor_name"],
            figures=UsageFigures(
                requests=row["requests"],
                failed=row["failed"],
                prompt_tokens=row["prompt_tokens"] or 0,
                completion_tokens=row["completion_tokens"] or 0,
            ),
        )
        for row in grouped
    ]


def _ranked(totals: dict[tuple, UsageFigures]) -> list[UsageTotal]:
    ranked = [UsageTotal(*key, figures=figures) for key, figures in totals.items()]
    ranked.sort(key=lambda t: (-t.figures.total_tokens, -t.figures.requests, t.department_slug, t.actor_name))
    return ranked


def usage_summary(*, period: UsagePeriod, department: Any = None) -> UsageSummary:
    """``usage_rows`` with the totals a page shows: per day (every day of the period), per
    department and per actor."""
    rows = usage_rows(period=period, department=department)
    summary = UsageSummary(period=period, rows=rows)
    days = {day: UsageFigures() for day in period.days}
    departments: dict[tuple, UsageFigures] = defaultdict(UsageFigures)
    actors: dict[tuple, UsageFigures] = defaultdict(UsageFigures)
    for row in rows:
        summary.total.add(row.figures)
        days.setdefault(row.day, UsageFigures()).add(row.figures)
        departments[(row.department_slug, "", "")].add(row.figures)
        actors[(row.department_slug, row.actor_type, row.actor_name)].add(row.figures)
    summary.by_day = sorted(days.items())
    summary.by_department = _ranked(departments)
    summary.by_actor = _ranked(actors)
    return summary
