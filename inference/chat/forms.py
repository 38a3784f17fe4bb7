"""Forms of the chat portal: renaming a conversation, the department's task templates."""

from __future__ import annotations

import json

from django import forms
from django.utils.translation import gettext_lazy as _

from inference.models import TaskTemplate

SCHEMA_INVALID = _("Not valid JSON: %(error)s")
SCHEMA_NOT_OBJECT = _("The JSON schema must be a JSON object.")
SCHEMA_MAX_CHARS = 20000


class ConversationRenameForm(forms.Form):
    title = forms.CharField(label=_("Title"), max_length=200, required=False)


class TaskTemplateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    instruction = forms.CharField(
        label=_("Instruction"),
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=4000,
        help_text=_("What the model is asked to do, e.g. “Extract the invoice fields.”"),
    )
    json_schema = forms.CharField(
        label=_("JSON schema of the answer (optional)"),
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "mono"}),
        required=False,
        max_length=SCHEMA_MAX_CHARS,
    )
    is_active = forms.BooleanField(label=_("Show in the chat"), required=False, initial=True)

    def __init__(self, data=None, *, template: TaskTemplate | None = None, **kwargs):
        if template is not None and data is None:
            kwargs["initial"] = {
                "name": template.name,
                "instruction": template.instruction,
                "json_schema": json.dumps(template.json_schema, ensure_ascii=False, indent=2)
                if template.json_schema
                else "",
                "is_active": template.is_active,
            }
        super().__init__(data, **kwargs)

    def clean_json_schema(self):
        text = self.cleaned_data["json_schema"].strip()
        if not text:
            return None
        try:
            schema = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(SCHEMA_INVALID, params={"error": error}) from None
        if not isinstance(schema, dict):
            raise forms.ValidationError(SCHEMA_NOT_OBJECT)
        return schema
