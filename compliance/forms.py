"""The auditor console's filter and export forms."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.events import EventType, Outcome
from compliance.export import FORMATS

PAGE_SIZES = (25, 50, 100, 200)
PAGE_SIZE_DEFAULT = 50


class UTCDateTimeField(forms.DateTimeField):
    """A time without a zone is read as UTC, the zone the console shows times in."""

    def to_python(self, value):
        with timezone.override(UTC):
            return super().to_python(value)


class AuditFilterForm(forms.Form):
    since = UTCDateTimeField(
        label=_("From (UTC)"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = UTCDateTimeField(
        label=_("Until (UTC)"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    user = forms.CharField(label=_("User"), required=False, max_length=150)
    department = forms.SlugField(label=_("Department"), required=False, max_length=50)
    event_type = forms.ChoiceField(label=_("Event type"), required=False, choices=[("", "—"), *EventType.choices])
    outcome = forms.ChoiceField(label=_("Outcome"), required=False, choices=[("", "—"), *Outcome.choices])
    object = forms.CharField(label=_("Object"), required=False, max_length=255)
    request_id = forms.CharField(label=_("Request id"), required=False, max_length=64)

    FILTERS = ("since", "until", "user", "department", "event_type", "outcome", "object", "request_id")

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until <= since:
            self.add_error("until", _("The end of the range must come after its start."))
        return cleaned

    def active_filters(self) -> dict:
        if not self.is_valid():
            return {}
        return {name: self.cleaned_data[name] for name in self.FILTERS if self.cleaned_data.get(name)}


class AuditConsoleForm(AuditFilterForm):
    """The console's list: the filters, a page size and where the page starts (keyset: the
    entries older than ``before``, a sequence number)."""

    size = forms.TypedChoiceField(
        label=_("Per page"),
        required=False,
        coerce=int,
        empty_value=PAGE_SIZE_DEFAULT,
        choices=[(size, str(size)) for size in PAGE_SIZES],
        initial=PAGE_SIZE_DEFAULT,
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    @property
    def filter_fields(self):
        return [self[name] for name in self.FILTERS]

    def page_size(self) -> int:
        if self.is_bound and self.is_valid():
            return self.cleaned_data["size"] or PAGE_SIZE_DEFAULT
        return PAGE_SIZE_DEFAULT

    def before_sequence(self) -> int | None:
        if self.is_bound and self.is_valid():
            return self.cleaned_data.get("before")
        return None


class AuditExportForm(forms.Form):
    """The export takes the command's filters: a time window and a department."""

    since = AuditFilterForm.base_fields["since"]
    until = AuditFilterForm.base_fields["until"]
    department = AuditFilterForm.base_fields["department"]
    format = forms.ChoiceField(label=_("Format"), choices=[(name, name.upper()) for name in FORMATS], initial="jsonl")
