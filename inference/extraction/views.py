"""The portal's extraction pages under ``/d/<slug>/extract/``: run a template on a file (the same
service the REST API uses), read the result with its rule flags, page images and the fields'
boxes, correct a field as a reviewer, and run batches with progress and downloads.

The department middleware has answered 404 to non-members and opened the scope; every view is
bound to ``Action.EXTRACTION_RUN`` (corrections ask ``Action.EXTRACTION_REVIEW`` in the service),
and a result or batch of another department answers a recorded 404 (``department_object_get``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import Action, allowed, authorize_request, department_object_get, requires
from assets.content import KINDS, DecodeBusy
from assets.documents.model_pages import page_png
from assets.documents.pages import DocumentText, TextSource
from assets.documents.selectors import document_text
from assets.reading import AssetUnreadable
from assets.responses import locked_down
from assets.selectors import asset_get_for_request, asset_list
from compliance.context import current_request_context
from compliance.events import EventType
from compliance.services import audit_record
from inference.engine.errors import EngineBusy, InvalidRequest, ModelUnavailable
from inference.engine.structured import SchemaInvalid
from inference.extraction.batch_jobs import batch_cancel, batch_create, batch_start_after_commit
from inference.extraction.exports import FORMATS, batch_export_records, export_csv, export_jsonl, export_xlsx
from inference.extraction.forms import CorrectionForm, ExtractionRunForm, field_type, value_text
from inference.extraction.models import BUILTIN_RULE_MESSAGES, BatchJob, Extraction, ExtractionStatus
from inference.extraction.services import (
    GROUNDED_MESSAGE,
    MAX_PAGES,
    extraction_correct,
    extraction_correctable_paths,
    extraction_corrections_latest,
    extraction_field_paths,
    extraction_owner_id,
    extraction_run,
    templates_builtin_ensure,
)
from inference.image_budget import ImageBudgetExceeded
from inference.models import TaskTemplate
from inference.registry.selectors import model_infos_for_department
from inference.registry.services import ModelNotEnabled, ModelNotFound, VersionNotApproved

FILES_SHOWN = 200
RECENT_SHOWN = 20
PAGE_SIDE = 1200


def _templates(department) -> list[TaskTemplate]:
    """The department's active templates that can extract (a JSON schema); the built-in ones are
    created on first sight, as the API does."""
    templates_builtin_ensure(department=department)
    return list(
        TaskTemplate.objects.filter(department=department, is_active=True, json_schema__isnull=False).order_by("name")
    )


def _refusal_message(error: Exception) -> str:
    """What a person reads when the model could not run; the service's code goes with it."""
    if isinstance(error, EngineBusy):
        text = _("The model is busy with other requests. Try again in %(seconds)s s; nothing was stored.") % {
            "seconds": error.retry_after
        }
    elif isinstance(error, ModelUnavailable):
        text = _("The model is not ready (it may still be loading). Try again shortly; nothing was stored.")
    elif isinstance(error, ImageBudgetExceeded):
        text = _("This file is too large for the model to read. Choose a smaller file or one with fewer pages.")
    elif isinstance(error, AssetUnreadable):
        text = _("This file could not be decoded: page %(page)s is damaged. It is now marked unusable.") % {
            "page": error.page
        }
    elif isinstance(error, DecodeBusy):
        text = _("The server is busy decoding images. Try again in %(seconds)s s; nothing was stored.") % {
            "seconds": error.retry_after
        }
    elif isinstance(error, SchemaInvalid):
        text = _("This template's JSON schema cannot be used for extraction; the department administrator can fix it.")
    elif isinstance(error, ModelNotEnabled):
        text = _("The model is not enabled for this department; the department administrator can enable it.")
    elif isinstance(error, VersionNotApproved):
        text = _("This model version is not approved; the security administrator approves versions.")
    elif isinstance(error, ModelNotFound):
        text = _("No such model is loaded; choose one from the list.")
    else:
        text = _("The model refused the request.")
    code = getattr(error, "code", "") or type(error).__name__
    return f"{text} ({code})"


# --- the extraction page -------------------------------------------------------------------------


@requires(Action.EXTRACTION_RUN)
@require_http_methods(["GET", "POST"])
def extraction_home(request: HttpRequest, department_slug: str) -> HttpResponse:
    department = request.department
    templates = _templates(department)
    assets = list(asset_list(department=department)[:FILES_SHOWN])
    batch = request.method == "POST" and "batch" in request.POST
    models = model_infos_for_department(department)
    form = ExtractionRunForm(
        request.POST if request.method == "POST" else None,
        templates=templates,
        assets=assets,
        batch=batch,
        initial={"template": request.GET.get("template", "")},
    )
    if request.method == "POST" and form.is_valid():
        template = next(t for t in templates if t.slug == form.cleaned_data["template"])
        try:
            if batch:
                job = _batch_start(request, template, form.cleaned_data["assets"], form.cleaned_data["model"])
                return redirect("extraction:batch", department_slug=department_slug, batch_id=job.pk)
            extraction = _run_one(request, template, form.cleaned_data["assets"][0], form.cleaned_data["model"])
        except (
            EngineBusy,
            ModelUnavailable,
            InvalidRequest,
            SchemaInvalid,
            ImageBudgetExceeded,
            AssetUnreadable,
            DecodeBusy,
            ModelNotEnabled,
            VersionNotApproved,
            ModelNotFound,
        ) as error:
            form.add_error(None, _refusal_message(error))
        else:
            return redirect("extraction:result", department_slug=department_slug, extraction_id=extraction.pk)
    chosen = set(form["assets"].value() or [])
    return render(
        request,
        "inference/extraction.html",
        {
            "department": department,
            "membership": request.membership,
            "form": form,
            "templates": templates,
            "chosen_template": form["template"].value() or (templates[0].slug if templates else ""),
            "models": models,
            "chosen_model": form["model"].value() or "",
            "assets": assets,
            "chosen": chosen,
            "recent": list(
                Extraction.objects.filter(department=department, batch__isnull=True)
                .select_related("asset", "template")
                .order_by("-created_at")[:RECENT_SHOWN]
            ),
            "batches": list(
                BatchJob.objects.filter(department=department)
                .select_related("template")
                .order_by("-created_at")[:RECENT_SHOWN]
            ),
            "max_upload_mb": settings.MAX_UPLOAD_MB,
            "accept": ",".join(sorted(KINDS)),
            "may_upload": allowed(request.user, Action.ASSET_UPLOAD, membership=request.membership),
        },
    )


def _run_one(request: HttpRequest, template: TaskTemplate, asset_id: str, model: str | None) -> Extraction:
    """One extraction on the model the form named (None: the department's default); the service
    picks and checks the model and records each refusal before anything is read."""
    asset = asset_get_for_request(request, asset_id, purpose="extraction", action=Action.EXTRACTION_RUN)
    return extraction_run(
        department=request.department,
        template=template,
        asset=asset,
        model=model or None,
        action=Action.EXTRACTION_RUN,
        where={"path": request.path, "method": request.method},
        request_id=getattr(request, "request_id", None),
        acting_user=request.user,
    )


def _batch_start(request: HttpRequest, template: TaskTemplate, asset_ids: list[str], model: str | None) -> BatchJob:
    """Store the batch (a named model checked first, its refusals recorded) and start it."""
    job = batch_create(
        department=request.department,
        template=template,
        asset_ids=asset_ids,
        requested_by=request.user,  # the owner of its results for reviews, and who may stop it
        model=model or "",
        where={"path": request.path, "method": request.method},
    )
    batch_start_after_commit(job, context=current_request_context())
    return job


# --- one result ------------------------------------------------------------------------------------


def _extraction(request: HttpRequest, extraction_id: Any) -> Extraction:
    return department_object_get(
        request,
        Extraction.objects.filter(department=request.department).select_related("template", "asset", "batch"),
        extraction_id,
        action=Action.EXTRACTION_RUN,
        noun="extraction",
    )


def _value_html(value: Any) -> SafeString:
    """A value as readable HTML: objects as a definition list, lists of objects as a table."""
    if value is None or value == "" or value == []:
        return mark_safe('<span class="muted">—</span>')
    if isinstance(value, bool):
        return format_html("{}", _("yes") if value else _("no"))
    if isinstance(value, dict):
        items = format_html_join(
            "", "<dt>{}</dt><dd>{}</dd>", ((key, _value_html(item)) for key, item in value.items())
        )
        return format_html('<dl class="nested">{}</dl>', items)
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            columns: list[str] = []
            for item in value:
                columns += [key for key in item if key not in columns]
            head = format_html_join("", "<th>{}</th>", ((column,) for column in columns))
            body = format_html_join(
                "",
                "<tr>{}</tr>",
                (
                    (format_html_join("", "<td>{}</td>", ((_value_html(item.get(column)),) for column in columns)),)
                    for item in value
                ),
            )
            return format_html('<table class="nested"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)
        return format_html_join(", ", "{}", ((_value_html(item),) for item in value))
    return format_html("{}", value)


def _result_extras(extraction: Extraction) -> tuple[dict, list[int]]:
    """(grounding by field path, the pages the model was shown), as the platform recorded them in
    the extraction's usage; never from the result, which is the model's answer."""
    usage = extraction.usage if isinstance(extraction.usage, dict) else {}
    grounding = usage.get("grounding") if isinstance(usage.get("grounding"), dict) else {}
    pages = [page for page in usage.get("pages") or [] if isinstance(page, int) and page >= 1]
    return grounding, pages


# Lines of a page's text shown under its image (a dense scanned page has a few hundred).
PAGE_TEXT_LINES_SHOWN = 400
# Below this OCR confidence a line is marked: a reviewer reads it against the image.
LOW_CONFIDENCE = 0.8


def _page_text(text: DocumentText | None, number: int) -> dict:
    """What the page's text layer read, for the reviewer to compare with the values: its lines
    (OCR's confidence marked where low) and where the text came from."""
    page = text.page(number) if text is not None else None
    if page is None:
        return {"text_lines": None}
    sources = {
        TextSource.PDF: _("the PDF's own text"),
        TextSource.OCR: _("OCR"),
        TextSource.OFFICE: _("the document's text"),
    }
    lines = [
        {"text": line.text, "low": page.source == TextSource.OCR and line.confidence < LOW_CONFIDENCE}
        for line in page.lines[:PAGE_TEXT_LINES_SHOWN]
    ]
    return {
        "text_lines": lines,
        "text_source": sources.get(page.source, ""),
        "text_more": max(0, len(page.lines) - PAGE_TEXT_LINES_SHOWN),
        "text_unusable": not page.usable,
    }


def _outcome_shown(outcome: Any) -> Any:
    """A rule's outcome with its message in the reader's language where the platform wrote it (a
    built-in rule's, the grounding check's, stored in the language of the run); an
    administrator's own message as written."""
    if not isinstance(outcome, dict) or not isinstance(outcome.get("message"), str):
        return outcome
    message = outcome["message"]
    if message in BUILTIN_RULE_MESSAGES:
        return {**outcome, "message": str(BUILTIN_RULE_MESSAGES[message])}
    if outcome.get("op") == "grounded" and isinstance(outcome.get("field"), str):
        field = outcome["field"]
        written = {GROUNDED_MESSAGE.format(field=field)}
        for language in settings.LANGUAGES:
            with translation.override(language[0]):
                written.add(_(GROUNDED_MESSAGE).format(field=field))
        if message in written:
            return {**outcome, "message": _(GROUNDED_MESSAGE).format(field=field)}
    return outcome


def _top_level(path: str) -> str:
    """The top-level field of a leaf path: ``anomalies[0].type`` → ``anomalies``."""
    return path.split(".", 1)[0].split("[", 1)[0]


def _box(grounding: Any) -> dict | None:
    """A grounding record usable as a box over its page (the page's size gives the scale)."""
    if not isinstance(grounding, dict) or grounding.get("ungrounded"):
        return None
    box, width, height, page = (
        grounding.get("box"),
        grounding.get("width"),
        grounding.get("height"),
        grounding.get("page"),
    )
    if not (isinstance(box, list | tuple) and len(box) == 4 and isinstance(page, int)):
        return None
    if not all(isinstance(v, int | float) for v in [*box, width, height]) or not width or not height:
        return None
    x0, y0, x1, y1 = box
    return {
        "page": page,
        "left": round(100 * x0 / width, 3),
        "top": round(100 * y0 / height, 3),
        "width": round(100 * (x1 - x0) / width, 3),
        "height": round(100 * (y1 - y0) / height, 3),
    }


@requires(Action.EXTRACTION_RUN)
@require_GET
def extraction_result(request: HttpRequest, department_slug: str, extraction_id: str) -> HttpResponse:
    extraction = _extraction(request, extraction_id)
    form = CorrectionForm(paths=extraction_correctable_paths(extraction), schema=None)
    return _result_page(request, extraction, form)


def _result_page(request: HttpRequest, extraction: Extraction, form: CorrectionForm, status: int = 200) -> HttpResponse:
    schema = extraction.template.json_schema if extraction.template is not None else None
    result = extraction.result if isinstance(extraction.result, dict) else {}
    corrections = extraction_corrections_latest(extraction)
    grounding, pages = _result_extras(extraction)
    # Grounding is kept per leaf path ("total_amount", "anomalies[0].type"): every found value
    # gets its box; a field's row says where its first value was found, or that none was.
    boxes: dict[int, list[dict]] = {}
    placed: dict[str, dict] = {}
    for leaf, record in grounding.items():
        box = _box(record)
        if box is not None:
            boxes.setdefault(box["page"], []).append({**box, "field": leaf})
            placed.setdefault(_top_level(leaf), box)
    rows = []
    correctable = set(extraction_correctable_paths(extraction))
    for path in extraction_field_paths(extraction):
        correction = corrections.get(path)
        box = placed.get(path)
        rows.append(
            {
                "path": path,
                "extracted": _value_html(result.get(path)),
                "kind": field_type(schema, path),
                "correction": correction,
                "correctable": path in correctable,
                "edit_text": value_text(correction.value) if correction is not None else value_text(result.get(path)),
                "corrected": _value_html(correction.value) if correction is not None else None,
                "grounded": box,
                "ungrounded": box is None and any(_top_level(leaf) == path for leaf in grounding),
            }
        )
    asset = extraction.asset
    if asset is not None:
        shown = pages or list(range(1, min(asset.page_count, MAX_PAGES) + 1))
        shown += sorted(page for page in boxes if page not in shown)
        # A result is the file's content read out: viewed like the file (AU-1).
        audit_record(
            event_type=EventType.ASSET_VIEW,
            department=asset.department,
            obj=asset,
            details={"view": "extraction", "extraction": str(extraction.pk)},
        )
        text = document_text(asset)
    else:
        shown, text = [], None
    may_review = allowed(
        request.user,
        Action.EXTRACTION_REVIEW,
        membership=request.membership,
        owner_id=extraction_owner_id(extraction),
    )
    return render(
        request,
        "inference/extraction_result.html",
        {
            "department": request.department,
            "membership": request.membership,
            "extraction": extraction,
            "rows": rows,
            "outcomes": [_outcome_shown(outcome) for outcome in extraction.rule_outcomes or []],
            "problems": extraction.problems or [],
            "pages": [{"number": page, "boxes": boxes.get(page, []), **_page_text(text, page)} for page in shown],
            "has_text_layer": text is not None,
            "form": form,
            "may_review": may_review,
            "valid": extraction.status == ExtractionStatus.VALID,
        },
        status=status,
    )


@requires(Action.EXTRACTION_RUN)
@require_POST
def extraction_correct_view(request: HttpRequest, department_slug: str, extraction_id: str) -> HttpResponse:
    extraction = _extraction(request, extraction_id)
    # Who may review is decided before anything posted is read (the service decides again).
    authorize_request(request, Action.EXTRACTION_REVIEW, owner_id=extraction_owner_id(extraction), obj=extraction)
    schema = extraction.template.json_schema if extraction.template is not None else None
    form = CorrectionForm(request.POST, paths=extraction_correctable_paths(extraction), schema=schema)
    if form.is_valid():
        try:
            extraction_correct(
                extraction=extraction,
                field_path=form.cleaned_data["field_path"],
                value=form.cleaned_data["value"],
                note=form.cleaned_data["note"],
                acting_user=request.user,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Correction saved; the extracted value is kept beside it."))
            return redirect("extraction:result", department_slug=department_slug, extraction_id=extraction.pk)
    return _result_page(request, extraction, form, status=400)


@requires(Action.EXTRACTION_RUN)
@require_GET
def extraction_page_image(request: HttpRequest, department_slug: str, extraction_id: str, page: int) -> HttpResponse:
    extraction = _extraction(request, extraction_id)
    asset = extraction.asset
    if asset is None or not 1 <= page <= asset.page_count:
        return HttpResponse(status=404)
    try:
        png = page_png(asset, page, side=PAGE_SIDE)  # only that page is rendered
    except AssetUnreadable:
        return HttpResponse(status=422)
    except DecodeBusy as busy:
        return HttpResponse(status=503, headers={"Retry-After": str(busy.retry_after)})
    audit_record(
        event_type=EventType.ASSET_VIEW,
        department=asset.department,
        obj=asset,
        details={"view": "page", "page": page, "extraction": str(extraction.pk)},
    )
    return locked_down(HttpResponse(png, content_type="image/png"))


# --- batches ---------------------------------------------------------------------------------------


def _batch(request: HttpRequest, batch_id: Any) -> BatchJob:
    return department_object_get(
        request,
        BatchJob.objects.filter(department=request.department).select_related("template"),
        batch_id,
        action=Action.EXTRACTION_RUN,
        noun="batch job",
    )


def _file_states(request: HttpRequest, job: BatchJob) -> list[dict]:
    """One entry per file of the job, in its order: pending until its result exists."""
    from assets.models import Asset

    results = {
        extraction.asset_ref: extraction
        for extraction in Extraction.objects.filter(department=request.department, batch=job)
    }
    names = {
        str(asset.pk): asset.original_name
        for asset in Asset.objects.filter(department=request.department, pk__in=job.asset_ids)
    }
    titles = dict(ExtractionStatus.choices)
    states = []
    for asset_id in job.asset_ids:
        extraction = results.get(asset_id)
        state = extraction.status if extraction is not None else "pending"
        states.append(
            {
                "id": asset_id,
                "name": names.get(asset_id, asset_id),
                "status": state,
                "label": extraction.status_label if extraction is not None else _("Waiting"),
                "title": str(titles.get(state, "")),
                "url": reverse("extraction:result", args=[request.department.slug, extraction.pk])
                if extraction is not None
                else "",
                "flags": list(extraction.flags or []) if extraction is not None else [],
            }
        )
    return states


def _batch_state(request: HttpRequest, job: BatchJob) -> dict:
    return {
        "id": str(job.pk),
        "status": job.status,
        "label": str(job.get_status_display()),
        "finished": job.is_finished,
        "total": job.total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
        "files": _file_states(request, job),
    }


@requires(Action.EXTRACTION_RUN)
@require_GET
def batch_detail(request: HttpRequest, department_slug: str, batch_id: str) -> HttpResponse:
    job = _batch(request, batch_id)
    return render(
        request,
        "inference/batch.html",
        {
            "department": request.department,
            "membership": request.membership,
            "job": job,
            "state": _batch_state(request, job),
            "formats": list(FORMATS),
            "may_cancel": allowed(
                request.user, Action.BATCH_CANCEL, membership=request.membership, owner_id=job.requested_by_id
            ),
        },
    )


@requires(Action.EXTRACTION_RUN)
@require_GET
def batch_status(request: HttpRequest, department_slug: str, batch_id: str) -> JsonResponse:
    job = _batch(request, batch_id)
    response = JsonResponse(_batch_state(request, job), json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = "private, no-store"
    return response


@requires(Action.EXTRACTION_RUN)
@require_POST
def batch_cancel_view(request: HttpRequest, department_slug: str, batch_id: str) -> HttpResponse:
    job = _batch(request, batch_id)
    if job.is_finished:
        messages.info(request, _("This batch had already ended."))
    else:
        batch_cancel(job=job, acting_user=request.user)
        messages.success(request, _("Cancelling: the file in hand is finished, the rest are not started."))
    return redirect("extraction:batch", department_slug=department_slug, batch_id=job.pk)


@requires(Action.EXTRACTION_RUN)
@require_GET
def batch_download(request: HttpRequest, department_slug: str, batch_id: str, fmt: str) -> HttpResponse:
    job = _batch(request, batch_id)
    if fmt not in FORMATS:
        return HttpResponse(status=404)
    records = batch_export_records(job)
    # The results are the files' content read out: their export is recorded like a download.
    audit_record(
        event_type=EventType.ASSET_VIEW,
        department=request.department,
        obj=job,
        details={"view": "batch_export", "format": fmt, "files": len(records)},
    )
    if fmt == "jsonl":
        body = b"".join(export_jsonl(records))
    elif fmt == "csv":
        body = export_csv(records)
    else:
        body = export_xlsx(records)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="batch-{job.pk}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
