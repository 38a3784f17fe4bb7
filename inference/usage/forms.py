"""The usage pages' filter: a range of whole days in the platform's time zone (default: the last
30 days, today included) and, on the system administrator's page, one department or all."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from departments.models import Department

DEFAULT_DAYS = 30
MAX_DAYS = 366
END_BEFORE_START = _("The last day must not come before the first day.")
RANGE_TOO_LONG = _("Choose at most %(days)s days.")
DAY_OUT_OF_RANGE = _("Choose a day between %(first)s and %(last)s.")
# The days a usage page can cover: far from date's limits, so that a range's arithmetic (a default
# 30 days either side, the day after the last as a bound) never overflows into a 500.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9000, 12, 31)


class UsageFilterForm(forms.Form):
    start = forms.DateField(label=_("First day"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("Last day"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, today: date | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today or timezone.localdate()

    @classmethod
    def for_query(cls, query, **kwargs) -> UsageFilterForm:
        """The form of a page's query; without one, the default range filled in (so that the
        fields show the days the page covers)."""
        if not query:
            today = kwargs.get("today") or timezone.localdate()
            query = {"start": (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(), "end": today.isoformat()}
        return cls(query, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        start, end = cleaned.get("start"), cleaned.get("end")
        for name, day in (("start", start), ("end", end)):
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                bounds = {"first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()}
                self.add_error(name, forms.ValidationError(DAY_OUT_OF_RANGE, params=bounds))
        if self.errors:
            return cleaned
        if end is None and start is None:
            end = self.today
        elif end is None:  # from the first day, up to 30 days but not past today
            end = min(start + timedelta(days=DEFAULT_DAYS - 1), max(start, self.today))
        if start is None:
            start = end - timedelta(days=DEFAULT_DAYS - 1)
        if end < start:
            self.add_error("end", END_BEFORE_START)
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("end", RANGE_TOO_LONG % {"days": MAX_DAYS})
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def range(self) -> tuple[date, date] | None:
        """The chosen days, or None while the form has errors."""
        if not self.is_valid():
            return None
        return self.cleaned_data["start"], self.cleaned_data["end"]


class UsageAllFilterForm(UsageFilterForm):
    """The system administrator's page: every department, or one of them."""

    department = forms.ModelChoiceField(
        label=_("Department"),
        queryset=Department.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label=_("All departments"),
    )
