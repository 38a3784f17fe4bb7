"""The portal's file pages under ``/d/<slug>/files/``: thin views over services and selectors.

``DepartmentScopeMiddleware`` has already answered 404 to non-members and opened the scope;
every view that names an asset fetches it with ``asset_get_for_request`` (the one access
helper), so a foreign id is a 404 with an audited denial on every path.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from accounts.activity import background
from accounts.permissions import Action, allowed, object_not_found, requires
from assets.content import KINDS, DecodeBusy
from assets.documents.portal_display import text_layer_context, text_layer_list_attach, text_layer_statuses
from assets.models import Asset
from assets.names import content_disposition, download_name
from assets.reading import AssetUnreadable, asset_plaintext_chunks, asset_thumbnail_png
from assets.responses import locked_down
from assets.selectors import asset_get_for_request, asset_list
from assets.services import (
    asset_classification_update,
    asset_delete,
    asset_user_may_delete,
    department_usage_bytes,
)
from assets.uploads import RequestUpload
from compliance.events import EventType
from compliance.services import audit_record
from departments.models import Classification
from departments.tenancy import all_departments


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _asset_url(request: HttpRequest, name: str, asset: Asset) -> str:
    return reverse(f"assets:{name}", args=[request.department.slug, asset.pk])


@requires(Action.ASSET_VIEW)
@require_GET
def file_list(request: HttpRequest, department_slug: str) -> HttpResponse:
    department = request.department
    return render(
        request,
        "assets/list.html",
        {
            "department": department,
            "membership": request.membership,
            "assets": text_layer_list_attach(list(asset_list(department=department).select_related("uploaded_by"))),
            "usage_bytes": department_usage_bytes(department),
            "max_upload_mb": settings.MAX_UPLOAD_MB,
            "accept": ",".join(sorted(KINDS)),
        },
    )


def _upload_response(request: HttpRequest, status: int, payload: dict, headers: dict[str, str]) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(payload, status=status, headers=headers, json_dumps_params={"ensure_ascii": False})
    for item in payload.get("files", []):
        if "detail" in item:
            messages.error(request, f"{item.get('name', '')}: {item['detail']}")
        else:
            messages.success(request, _("Uploaded %(name)s.") % {"name": item["name"]})
    if "detail" in payload:
        messages.error(request, payload["detail"])
    return redirect("assets:list", department_slug=request.department.slug)


@csrf_protect
def _file_upload(request: HttpRequest, upload: RequestUpload) -> HttpResponse:
    result = upload.store(department=request.department, uploaded_by=request.user)
    payload = result.as_dict(lambda asset: {"url": _asset_url(request, "detail", asset)})
    return _upload_response(request, result.status, payload, result.headers)


@csrf_exempt  # CSRF is checked by _file_upload, after our upload handler is in place
@requires(Action.ASSET_UPLOAD)
def file_upload(request: HttpRequest, department_slug: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    # Must happen before anything reads request.POST (the CSRF check would, with Django's
    # spooling handlers): from here on the body only ever reaches the encrypting stager.
    with RequestUpload(request) as upload:
        return _file_upload(request, upload)


@requires(Action.ASSET_VIEW)
def file_detail(request: HttpRequest, department_slug: str, asset_id: str) -> HttpResponse:
    asset = asset_get_for_request(request, asset_id, purpose="view")
    if request.method == "POST":
        try:
            classification = Classification(int(request.POST.get("classification", "")))
        except ValueError:
            messages.error(request, _("Choose a valid classification."))
        else:
            asset_classification_update(asset=asset, classification=classification, acting_user=request.user)
            messages.success(request, _("Classification changed."))
        return redirect("assets:detail", department_slug=department_slug, asset_id=asset.pk)
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    audit_record(event_type=EventType.ASSET_VIEW, department=asset.department, obj=asset, details={"view": "detail"})
    return render(
        request,
        "assets/detail.html",
        {
            "department": request.department,
            "membership": request.membership,
            "asset": asset,
            "may_delete": asset_user_may_delete(asset=asset, user=request.user),
            "may_label": allowed(request.user, Action.ASSET_LABEL_RAISE, membership=request.membership),
            "classifications": Classification.choices,
            **text_layer_context(asset),
        },
    )


@background  # the list and detail pages poll it while a text layer is being made
@requires(Action.ASSET_VIEW)
@require_GET
def file_text_status(request: HttpRequest, department_slug: str) -> HttpResponse:
    """``{"files": {id: status}}`` of the text layers of the files named by ``id`` (at most 100);
    ids not in the department are left out, and asking for another department's is recorded as a
    refusal (one entry a request). Progress only: no text of any file."""
    ids = request.GET.getlist("id")[:100]
    statuses = text_layer_statuses(ids)
    unanswered = {parsed for parsed in map(_uuid_or_none, ids) if parsed is not None and str(parsed) not in statuses}
    if unanswered:
        with all_departments(reason="classify refused file ids for the audit entry (never returned)"):
            foreign = sorted(
                str(pk)
                for pk in Asset.objects.filter(pk__in=unanswered)
                .exclude(department=request.department)
                .values_list("pk", flat=True)
            )
        if foreign:
            object_not_found(
                action=Action.ASSET_VIEW,
                subject=request.user,
                model=Asset,
                object_id=foreign[0],
                reason="file of another department",
                department=request.department,
                path=request.path,
                purpose="text_status",
                files=len(foreign),
            )
    return JsonResponse({"files": statuses})


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@requires(Action.ASSET_VIEW)
@require_GET
def file_download(request: HttpRequest, department_slug: str, asset_id: str) -> HttpResponse:
    asset = asset_get_for_request(request, asset_id, purpose="download")
    audit_record(
        event_type=EventType.ASSET_DOWNLOAD, department=asset.department, obj=asset, details={"size": asset.size}
    )
    response = StreamingHttpResponse(asset_plaintext_chunks(asset), content_type=asset.content_type)
    response["Content-Length"] = str(asset.size)
    response["Content-Disposition"] = content_disposition(download_name(asset.original_name, KINDS[asset.content_type]))
    return locked_down(response)


@requires(Action.ASSET_VIEW)
@require_GET
def file_thumbnail(request: HttpRequest, department_slug: str, asset_id: str) -> HttpResponse:
    """The file's first page, small; ``?page=N`` another page of a PDF (the pages a chat answer
    drew on), ``&size=large`` that page larger. A page the file does not have is a 404."""
    asset = asset_get_for_request(request, asset_id, purpose="thumbnail")
    page, large = request.GET.get("page"), request.GET.get("size") == "large"
    details = {"view": "thumbnail"}
    try:
        if page is None and not large:
            png = asset_thumbnail_png(asset)
        else:
            from assets.documents.model_pages import PAGE_VIEW_SIDE, page_png
            from assets.reading import THUMBNAIL_SIDE

            number = 1 if page is None else int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 0
            if not 1 <= number <= asset.page_count:
                raise Http404  # a page the file does not have
            png = page_png(asset, number, side=PAGE_VIEW_SIDE if large else THUMBNAIL_SIDE)
            details["page"] = number
    except AssetUnreadable:  # marked unusable; the page shows the file without a preview
        return HttpResponse(status=422)
    except DecodeBusy as busy:
        return HttpResponse(status=503, headers={"Retry-After": str(busy.retry_after)})
    # A thumbnail is the file's content, decrypted and scaled down: a view like any other (AU-1).
    audit_record(event_type=EventType.ASSET_VIEW, department=asset.department, obj=asset, details=details)
    response = HttpResponse(png, content_type="image/png")
    return locked_down(response)


@requires(Action.ASSET_DELETE)
@require_POST
def file_delete(request: HttpRequest, department_slug: str, asset_id: str) -> HttpResponse:
    asset = asset_get_for_request(request, asset_id, purpose="delete", action=Action.ASSET_DELETE)
    name = asset.original_name
    try:
        asset_delete(asset=asset, acting_user=request.user)
    except PermissionDenied:
        if _wants_json(request):
            return JsonResponse({"code": "forbidden", "detail": _("You may not delete this file.")}, status=403)
        raise
    if _wants_json(request):
        return JsonResponse({"deleted": str(asset_id)})
    messages.success(request, _("Deleted %(name)s.") % {"name": name})
    return redirect("assets:list", department_slug=department_slug)
