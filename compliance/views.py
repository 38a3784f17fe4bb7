"""The auditor console (/audit/): the audit administrator reviews, filters and exports (SM-3).

Every route is bound to ``Action.AUDIT_VIEW`` or ``Action.AUDIT_EXPORT`` (the audit administrator,
from the admin networks only: 404 elsewhere; other roles: 403; both audited). Viewing and
exporting are audited too.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import NoReturn

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.permissions import Action, refusal_record, requires
from compliance.chain import canonical_json
from compliance.events import EventType
from compliance.export import audit_export
from compliance.forms import PAGE_SIZE_DEFAULT, AuditConsoleForm, AuditExportForm
from compliance.masking import masked_preview
from compliance.models import AuditArchive
from compliance.preview_crypto import STATE_OPEN, entry_previews_open
from compliance.selectors import audit_archive_list, audit_chain_status, audit_entry_get, audit_entry_page
from compliance.services import audit_record
from compliance.verify_runs import verify_run_get, verify_run_latest, verify_run_start
from departments.models import Department

ENTRY_NOT_FOUND = "No audit entry with this sequence number (it may have been purged after export)."
ARCHIVE_FILE_MISSING = "The archive file is no longer on this server."
RUN_NOT_FOUND = "No such chain verification."
DETAILS_SHOWN = 160  # characters of an entry's details in the list; the detail view has them all
REFRESH_SECONDS = 2  # how often a running verification's page reloads itself


def _plain_filters(filters: dict) -> dict:
    return {name: value.isoformat() if hasattr(value, "isoformat") else value for name, value in filters.items()}


def _pretty(details: dict) -> str:
    """Details as an auditor reads them: indented JSON, CJK text as itself."""
    return json.dumps(details, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@requires(Action.AUDIT_VIEW)
@require_http_methods(["GET"])
def entry_list(request: HttpRequest) -> HttpResponse:
    data = request.GET.copy()
    data.setdefault("size", str(PAGE_SIZE_DEFAULT))  # so that the choice shows the size in use
    form = AuditConsoleForm(data if request.GET else None)
    invalid = form.is_bound and not form.is_valid()
    filters = form.active_filters() if form.is_bound else {}
    size, before = form.page_size(), form.before_sequence()
    # Invalid filters list nothing: the errors are shown by their fields, never silently dropped.
    page = None if invalid else audit_entry_page(filters=filters, size=size, before=before)
    audit_record(
        event_type=EventType.AUDIT_VIEW,
        actor=request.user,
        object_type="compliance.auditentry",
        object_repr="audit trail list",
        details={"filters": _plain_filters(filters), "before": before, "size": size}
        if not invalid
        else {"filters_invalid": sorted(form.errors)},
    )
    owners: dict = {}  # one key look-up per object on the page
    for entry in page or ():
        # Sealed previews are opened for the audit administrator (this view is theirs alone).
        entry.opened = entry_previews_open(entry, owners)
        entry.details_preview = masked_preview(canonical_json(entry.opened.details), DETAILS_SHOWN)
    query = data.copy()  # the pager keeps the filters and the size, and moves ``before``
    query.pop("before", None)
    return render(
        request,
        "compliance/entry_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "status": audit_chain_status(),
            "verify_run": verify_run_latest(),
            "export_form": AuditExportForm(initial={"format": "jsonl"}),
        },
    )


def _not_found(request: HttpRequest, reason: str, object_type: str, object_id: object, message: str) -> NoReturn:
    """An auditor asked for something the console does not have: recorded, then 404."""
    refusal_record(
        action=Action.AUDIT_VIEW,
        reason=reason,
        actor=request.user,
        object_type=object_type,
        object_id=str(object_id),
        path=request.path,
    )
    raise Http404(message)


@requires(Action.AUDIT_VIEW)
@require_http_methods(["GET"])
def entry_detail(request: HttpRequest, sequence: int) -> HttpResponse:
    entry = audit_entry_get(sequence=sequence)
    if entry is None:
        _not_found(request, "no such audit entry", "compliance.auditentry", sequence, ENTRY_NOT_FOUND)
    opened = entry_previews_open(entry)
    audit_record(
        event_type=EventType.AUDIT_VIEW,
        actor=request.user,
        object_type="compliance.auditentry",
        object_id=str(entry.sequence),
        object_repr=str(entry),
        # Which sealed previews the auditor was shown in clear, and whether they could be.
        details={"view": "detail", "previews": opened.state, "previews_opened": opened.fields}
        if opened.fields
        else {"view": "detail"},
    )
    return render(
        request,
        "compliance/entry_detail.html",
        {"entry": entry, "opened": opened, "previews_open": STATE_OPEN, "details_json": _pretty(opened.details)},
    )


@requires(Action.AUDIT_VIEW)
@require_POST
def verify_start(request: HttpRequest) -> HttpResponse:
    """Start verifying the whole chain in the background (or show the run already going)."""
    run, created = verify_run_start(acting_user=request.user)
    if not created:
        messages.info(request, _("A verification of the chain is already running: here is its progress."))
    return redirect("compliance:verify_detail", pk=run.pk)


@requires(Action.AUDIT_VIEW)
@require_http_methods(["GET"])
def verify_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = verify_run_get(pk=pk)
    if run is None:
        _not_found(request, "no such verification run", "compliance.auditverifyrun", pk, RUN_NOT_FOUND)
    # Recorded once per state this session has seen (started, then finished): the page reloads
    # itself every few seconds while the run goes on, and each reload is not a new look.
    seen_key = f"audit_verify_run_seen_{run.pk}"
    if request.session.get(seen_key) != run.state:
        audit_record(
            event_type=EventType.AUDIT_VIEW,
            actor=request.user,
            object_type="compliance.auditverifyrun",
            object_id=str(run.pk),
            object_repr=str(run),
            details={"view": "verify", "run": run.pk, "state": run.state},
        )
        request.session[seen_key] = run.state
    return render(
        request,
        "compliance/verify_run.html",
        {"run": run, "refresh": None if run.finished or run.stale else REFRESH_SECONDS},
    )


@requires(Action.AUDIT_EXPORT)
@require_POST
def export_create(request: HttpRequest) -> HttpResponse:
    form = AuditExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The export filters are not valid."))
        return redirect("compliance:entry_list")
    department = None
    if form.cleaned_data["department"]:
        department = Department.objects.filter(slug=form.cleaned_data["department"]).first()
        if department is None:
            messages.error(request, _("No such department."))
            return redirect("compliance:entry_list")
    name = f"audit-{timezone.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.{form.cleaned_data['format']}"
    result = audit_export(
        output=Path(settings.AUDIT_EXPORT_DIR) / name,
        format=form.cleaned_data["format"],
        since=form.cleaned_data["since"],
        until=form.cleaned_data["until"],
        department=department,
        acting_user=request.user,
    )
    messages.success(request, _("Exported %(count)d entries.") % {"count": result.entries})
    return redirect("compliance:archive_list")


@requires(Action.AUDIT_VIEW)
@require_http_methods(["GET"])
def archive_list(request: HttpRequest) -> HttpResponse:
    audit_record(
        event_type=EventType.AUDIT_VIEW,
        actor=request.user,
        object_type="compliance.auditarchive",
        object_repr="archive list",
    )
    return render(request, "compliance/archive_list.html", {"archives": audit_archive_list()[:200]})


@requires(Action.AUDIT_EXPORT)
@require_http_methods(["GET"])
def archive_download(request: HttpRequest, pk: int, part: str) -> FileResponse:
    archive = AuditArchive.objects.filter(pk=pk).first()
    if archive is None or part not in ("file", "manifest"):
        raise Http404(ARCHIVE_FILE_MISSING)
    path = Path(archive.file_name)
    if part == "manifest":
        path = path.with_name(path.name + ".manifest.json")
    # Only files this platform wrote into the export folder are served.
    export_dir = Path(settings.AUDIT_EXPORT_DIR).resolve()
    if not path.resolve().is_relative_to(export_dir) or not path.is_file():
        raise Http404(ARCHIVE_FILE_MISSING)
    audit_record(
        event_type=EventType.AUDIT_EXPORT,
        actor=request.user,
        obj=archive,
        details={"action": "download", "part": part, "sha256": archive.sha256},
    )
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
