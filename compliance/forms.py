"""The auditor console's filter and export forms."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from compliance.events import EventType, Outcome
from compliance.export import FORMATS


class AuditFilterForm(forms.Form):
    since = forms.DateTimeField(
        label=_("From"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        label=_("Until"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    user = forms.CharField(label=_("User"), required=False, max_length=150)
    department = forms.SlugField(label=_("Department"), required=False, max_length=50)
    event_type = forms.ChoiceField(label=_("Event type"), required=False, choices=[("", "—"), *EventType.choices])
    outcome = forms.ChoiceField(label=_("Outcome"), required=False, choices=[("", "—"), *Outcome.choices])
    object = forms.CharField(label=_("Object"), required=False, max_length=255)
    request_id = forms.CharField(label=_("Request id"), required=False, max_length=64)

    def active_filters(self) -> dict:
        if not self.is_valid():
            return {}
        return {name: value for name, value in self.cleaned_data.items() if value}


class AuditExportForm(forms.Form):
    """The export takes the command's filters: a time window and a department."""

    since = AuditFilterForm.base_fields["since"]
    until = AuditFilterForm.base_fields["until"]
    department = AuditFilterForm.base_fields["department"]
    format = forms.ChoiceField(label=_("Format"), choices=[(name, name) for name in FORMATS], initial="jsonl")
