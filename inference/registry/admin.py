"""The model registry's console pages: one registry page (versions, the active one, those loaded
beside it, the history of activations) and the steps, each bound to its own action of the policy
table and asking it before anything else: register (system), approve (security), activate, roll
back, load beside the active version and unload (system, ``Action.MODEL_ACTIVATE``).

The steps call the registry's services, which audit them; a refusal (another role, an unapproved
version) is recorded by the policy layer and answered 403.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.permissions import Action, allowed, authorize_request, object_not_found
from inference.registry.models import ModelActivation, ModelVersion
from inference.registry.selectors import model_version_active, model_version_previous, model_versions_additional
from inference.registry.services import (
    QUANTIZATIONS,
    VersionNotApproved,
    model_version_activate,
    model_version_approve,
    model_version_load,
    model_version_register,
    model_version_rollback,
    model_version_unload,
)


def _version_or_404(request, version_id: int, action: Action) -> ModelVersion:
    """The version, or a 404 whose refusal is recorded like every other one."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise object_not_found(
            action=action,
            subject=request.user,
            model=ModelVersion,
            object_id=version_id,
            reason="no such model version",
            path=request.path,
        )
    return version


class ModelVersionRegisterForm(forms.Form):
    path = forms.CharField(label=_("Model directory on the server"), max_length=500)
    name = forms.CharField(label=_("Name (the model's id in /v1/models)"), max_length=100)
    quantization = forms.ChoiceField(
        label=_("Quantisation"),
        choices=[(q, q or _("MODEL_QUANTIZATION (default)")) for q in QUANTIZATIONS],
        required=False,
    )
    note = forms.CharField(label=_("Note"), widget=forms.Textarea(attrs={"rows": 3}), required=False)


def _loaded_manifests() -> list[str]:
    from inference.runtime import engines_loaded

    return [engine.info().manifest_sha256 for engine in engines_loaded()]


def _load_refusal_text(exc: ValidationError) -> str:
    """The console's words (translated) for the registry's refusal to load or unload a version."""
    code = getattr(exc, "code", "")
    if code == "load_limit_reached":
        return gettext(
            "%(limit)s model(s) are loaded already, the most MODEL_MAX_LOADED allows: unload one first, "
            "or raise the setting."
        ) % {"limit": settings.MODEL_MAX_LOADED}
    if code == "load_is_active":
        return gettext("This version is the active one: it is always loaded.")
    return gettext("This version is not loaded beside the active one.")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are never changed or removed in the console: a changed directory is a new one."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        def bound(view, action: Action):
            wrapped = self.admin_site.admin_view(view)
            wrapped.policy_action = action
            return wrapped

        return [
            path("", bound(self.registry_view, Action.MODEL_REGISTRY_VIEW), name="inference_modelversion_changelist"),
            path("add/", bound(self.register_view, Action.MODEL_REGISTER), name="inference_modelversion_add"),
            path(
                "<int:version_id>/approve/",
                bound(self.approve_view, Action.MODEL_APPROVE),
                name="inference_modelversion_approve",
            ),
            path(
                "<int:version_id>/activate/",
                bound(self.activate_view, Action.MODEL_ACTIVATE),
                name="inference_modelversion_activate",
            ),
            path("rollback/", bound(self.rollback_view, Action.MODEL_ACTIVATE), name="inference_modelversion_rollback"),
            path(
                "<int:version_id>/load/",
                bound(self.load_view, Action.MODEL_ACTIVATE),
                name="inference_modelversion_load",
            ),
            path(
                "<int:version_id>/unload/",
                bound(self.unload_view, Action.MODEL_ACTIVATE),
                name="inference_modelversion_unload",
            ),
        ]

    def _registry_url(self) -> str:
        return reverse(f"{self.admin_site.name}:inference_modelversion_changelist")

    def registry_view(self, request):
        authorize_request(request, Action.MODEL_REGISTRY_VIEW)
        active = model_version_active()
        previous = model_version_previous()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Model versions"),
            "versions": ModelVersion.objects.all(),
            "active": active,
            "previous": previous,
            "loaded_sha256s": _loaded_manifests(),
            "additional": [version.pk for version in model_versions_additional()],
            "max_loaded": settings.MODEL_MAX_LOADED,
            "activations": ModelActivation.objects.select_related("version")[:20],
            "may_register": allowed(request.user, Action.MODEL_REGISTER),
            "may_approve": allowed(request.user, Action.MODEL_APPROVE),
            "may_activate": allowed(request.user, Action.MODEL_ACTIVATE),
        }
        return TemplateResponse(request, "inference/model_registry.html", context)

    def register_view(self, request):
        authorize_request(request, Action.MODEL_REGISTER)
        form = ModelVersionRegisterForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                version = model_version_register(acting_user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                messages.success(
                    request, gettext("Registered %(name)s: it waits for approval.") % {"name": version.name}
                )
                return HttpResponseRedirect(self._registry_url())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Register a model version"),
            "form": form,
        }
        return TemplateResponse(request, "inference/model_register.html", context)

    def approve_view(self, request, version_id: int):
        authorize_request(request, Action.MODEL_APPROVE)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = model_version_approve(
            version=_version_or_404(request, version_id, Action.MODEL_APPROVE), acting_user=request.user
        )
        messages.success(request, gettext("Approved %(name)s.") % {"name": version.name})
        return HttpResponseRedirect(self._registry_url())

    def activate_view(self, request, version_id: int):
        authorize_request(request, Action.MODEL_ACTIVATE)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            activation = model_version_activate(
                version=_version_or_404(request, version_id, Action.MODEL_ACTIVATE), acting_user=request.user
            )
        except VersionNotApproved:
            messages.error(
                request, gettext("This version is not approved: the security administrator approves it first.")
            )
            return HttpResponseRedirect(self._registry_url())
        messages.success(
            request,
            gettext("Activated %(name)s: it is loaded when the service next starts.")
            % {"name": activation.version.name},
        )
        return HttpResponseRedirect(self._registry_url())

    def load_view(self, request, version_id: int):
        authorize_request(request, Action.MODEL_ACTIVATE)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = _version_or_404(request, version_id, Action.MODEL_ACTIVATE)
        try:
            model_version_load(version=version, acting_user=request.user)
        except VersionNotApproved:
            messages.error(
                request, gettext("This version is not approved: the security administrator approves it first.")
            )
        except ValidationError as exc:
            messages.error(request, _load_refusal_text(exc))
        else:
            messages.success(
                request,
                gettext("%(name)s is loaded beside the active version when the service next starts.")
                % {"name": version.name},
            )
        return HttpResponseRedirect(self._registry_url())

    def unload_view(self, request, version_id: int):
        authorize_request(request, Action.MODEL_ACTIVATE)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = _version_or_404(request, version_id, Action.MODEL_ACTIVATE)
        try:
            model_version_unload(version=version, acting_user=request.user)
        except ValidationError as exc:
            messages.error(request, _load_refusal_text(exc))
        else:
            messages.success(
                request,
                gettext("%(name)s is no longer loaded from the next start of the service.") % {"name": version.name},
            )
        return HttpResponseRedirect(self._registry_url())

    def rollback_view(self, request):
        authorize_request(request, Action.MODEL_ACTIVATE)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            activation = model_version_rollback(acting_user=request.user)
        except ValidationError:
            messages.error(request, gettext("There is no earlier approved version to roll back to."))
        else:
            messages.success(
                request,
                gettext("Rolled back to %(name)s: it is loaded when the service next starts.")
                % {"name": activation.version.name},
            )
        return HttpResponseRedirect(self._registry_url())
