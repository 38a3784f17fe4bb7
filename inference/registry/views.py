"""The department administrator's model page: ``/d/<slug>/models/`` — which of the approved
model versions the department may use (``Action.DEPARTMENT_MODEL_MANAGE``; every change audited
by the registry's service)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.permissions import Action, object_not_found, requires
from inference.registry.models import ModelVersion
from inference.registry.selectors import department_model_choices
from inference.registry.services import department_model_access_set


def _loaded_manifests() -> list[str]:
    from inference.runtime import engines_loaded

    return [engine.info().manifest_sha256 for engine in engines_loaded()]


@requires(Action.DEPARTMENT_MODEL_MANAGE)
@require_http_methods(["GET"])
def department_models_page(request: HttpRequest, department_slug: str) -> HttpResponse:
    return render(
        request,
        "inference/department_models.html",
        {
            "department": request.department,
            "membership": request.membership,
            "choices": department_model_choices(request.department),
            "loaded_sha256s": _loaded_manifests(),
        },
    )


@requires(Action.DEPARTMENT_MODEL_MANAGE)
@require_POST
def department_model_switch(request: HttpRequest, department_slug: str, version_id: int) -> HttpResponse:
    version = ModelVersion.objects.filter(pk=version_id, approved_at__isnull=False).first()
    if version is None:
        raise object_not_found(
            action=Action.DEPARTMENT_MODEL_MANAGE,
            subject=request.user,
            model=ModelVersion,
            object_id=version_id,
            reason="no such approved model version",
            department=request.department,
            path=request.path,
        )
    department_model_access_set(
        department=request.department,
        version=version,
        enabled=request.POST.get("enabled") == "1",
        acting_user=request.user,
        membership=request.membership,
    )
    return redirect("department_models:page", department_slug=department_slug)
