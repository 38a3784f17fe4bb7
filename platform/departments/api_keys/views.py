"""The department administrator's API key page: ``/d/<slug>/api-keys/`` (list, create, revoke).

A new key is shown exactly once, on the page that answers the creation; only its hash is kept.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.permissions import Action, department_object_get, requires
from departments.api_keys.models import DEPARTMENT_SCOPES, ApiKey, Scope
from departments.api_keys.services import api_key_create, api_key_list, api_key_revoke


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=[(value, label) for value, label in Scope.choices if value in DEPARTMENT_SCOPES],
        widget=forms.CheckboxSelectMultiple,
    )
    days = forms.IntegerField(label=_("Valid for (days)"), min_value=1, max_value=3650)
    allowed_networks = forms.CharField(
        label=_("Allowed networks"),
        required=False,
        help_text=_("Optional, comma-separated, e.g. 10.1.2.0/24, 192.0.2.7"),
    )


def _scope_labels(scopes: list[str]) -> list[str]:
    labels = dict(Scope.choices)
    return [str(labels.get(scope, scope)) for scope in scopes]


@requires(Action.DEPARTMENT_API_KEY_MANAGE)
@require_http_methods(["GET", "POST"])
@never_cache  # the answer to a creation holds the one-time key: no copy of it in any cache
def api_key_page(request: HttpRequest, department_slug: str) -> HttpResponse:
    department = request.department
    created = None
    form = ApiKeyForm(request.POST or None, initial={"days": settings.API_KEY_DEFAULT_DAYS})
    if request.method == "POST" and form.is_valid():
        networks = [value.strip() for value in form.cleaned_data["allowed_networks"].split(",") if value.strip()]
        try:
            created = api_key_create(
                department=department,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                created_by=request.user,
                expires_at=timezone.now() + timedelta(days=form.cleaned_data["days"]),
                allowed_networks=networks,
            )
        except forms.ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form = ApiKeyForm(initial={"days": settings.API_KEY_DEFAULT_DAYS})
    return render(
        request,
        "departments/api_keys.html",
        {
            "department": department,
            "membership": request.membership,
            "rows": [{"key": key, "scopes": _scope_labels(key.scopes)} for key in api_key_list(department=department)],
            "form": form,
            "created": created,
            "now": timezone.now(),
        },
    )


@requires(Action.DEPARTMENT_API_KEY_MANAGE)
@require_POST
def api_key_revoke_view(request: HttpRequest, department_slug: str, key_id: int) -> HttpResponse:
    key = department_object_get(
        request,
        ApiKey.objects.filter(department=request.department),
        key_id,
        action=Action.DEPARTMENT_API_KEY_MANAGE,
        noun="API key",
    )
    api_key_revoke(key=key, acting_user=request.user)
    return redirect("departments:api_keys", department_slug=department_slug)
