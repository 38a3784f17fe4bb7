"""Batch jobs: many files × one template, run in the background with progress and cancellation.

Fairness: a job keeps **one** request in the engine at a time, under its department's fairness
key. The scheduler fills batches round-robin over departments, so other departments are never
behind more than one of the job's requests, and an interactive user of the same department waits
behind at most one (not behind the whole job). A busy engine (``EngineBusy``) makes the job wait
``retry_after`` and try again instead of failing.

The runner is a thread of the process that accepted the job; a job interrupted by a restart
stays ``running`` until ``batch_resume_interrupted`` (called by ``manage.py batch_resume``)
picks it up again — results already stored are not redone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from accounts.permissions import Action, Refused, authorize
from assets.content import DecodeBusy
from assets.reading import AssetUnreadable
from assets.selectors import asset_get
from compliance.context import RequestContext, request_context
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.models import Department
from departments.tenancy import all_departments, department_scope
from inference.engine.errors import EngineBusy, InferenceError
from inference.extraction.models import BatchJob, BatchStatus, Extraction, ExtractionStatus
from inference.extraction.services import extraction_run
from inference.image_budget import ImageBudgetExceeded
from inference.models import TaskTemplate

logger = logging.getLogger(__name__)

MAX_BATCH_ASSETS = 1000
BATCH_TOO_LARGE = "A batch holds at most {limit} files."
BATCH_EMPTY = "A batch needs at least one file."
BUSY_RETRIES = 60

_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def batch_create(
    *,
    department: Department,
    template: TaskTemplate,
    asset_ids: list[str],
    api_key=None,
    requested_by=None,
    model: str = "",
    where: dict | None = None,
) -> BatchJob:
    """Store the job (the files are checked when they are reached); the caller starts it after
    commit. A model named by the caller is checked now — loaded here, approved, enabled for the
    department — and each refusal recorded before anything is stored (``model_engine_for``); the
    runner checks it again for every file, as it does the department's default."""
    ids = list(dict.fromkeys(str(asset_id) for asset_id in asset_ids))  # unique, order kept
    if not ids:
        raise ValueError(BATCH_EMPTY)
    if len(ids) > MAX_BATCH_ASSETS:
        raise ValueError(BATCH_TOO_LARGE.format(limit=MAX_BATCH_ASSETS))
    if model:
        from inference.registry.services import model_engine_for

        model_engine_for(
            subject=api_key or requested_by,
            department=department,
            requested=model,
            action=_batch_action(api_key),
            **(where or {}),
        )
    job = BatchJob(
        department=department,
        template=template,
        template_slug=template.slug,
        asset_ids=ids,
        total=len(ids),
        api_key=api_key,
        requested_by=requested_by,
        model_name=model,
        created_by_name=(
            getattr(api_key, "audit_name", "") or (requested_by.get_username() if requested_by else "") or "system"
        ),
    )
    with transaction.atomic(), department_scope(department):
        job.full_clean()
        job.save()
        audit_record(
            event_type=EventType.BATCH_CREATE,
            actor=api_key or requested_by,
            department=department,
            obj=job,
            details={"template": template.slug, "files": len(ids), "model": model or None},
        )
    return job


def _batch_action(api_key) -> Action:
    """What a batch's model use is checked as: the API's extraction for a key's batch, the
    portal's for a person's."""
    return Action.API_EXTRACT if api_key is not None else Action.EXTRACTION_RUN


def batch_start_after_commit(job: BatchJob, *, context: RequestContext | None) -> None:
    transaction.on_commit(lambda: batch_start(job.pk, context=context))


def batch_start(job_id, *, context: RequestContext | None = None) -> threading.Thread:
    key = str(job_id)
    with _running_lock:
        thread = _running.get(key)
        if thread is not None and thread.is_alive():
            return thread
        thread = threading.Thread(target=_run_in_thread, args=(job_id, context), name=f"batch-{key[:8]}", daemon=True)
        _running[key] = thread
        thread.start()
        return thread


def _run_in_thread(job_id, context: RequestContext | None) -> None:
    try:
        with request_context(context or RequestContext(request_id=f"batch-{str(job_id)[:8]}")):
            batch_run(job_id)
    except Exception:
        logger.exception("batch %s crashed", job_id)
    finally:
        connections.close_all()
        with _running_lock:
            _running.pop(str(job_id), None)


def batch_cancel(*, job: BatchJob, acting_user) -> BatchJob:
    """Ask the runner to stop; it finishes the file in hand. A queued job stops at once.
    ``Action.BATCH_CANCEL``: a member stops the batches they started, the department
    administrator and the department's API keys (scope ``extract``) any of the department's."""
    authorize(acting_user, Action.BATCH_CANCEL, department=job.department_id, owner_id=job.requested_by_id, obj=job)
    with transaction.atomic(), department_scope(job.department_id):
        job = BatchJob.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            return job
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == BatchStatus.QUEUED and str(job.pk) not in _running:
            job.status, job.finished_at = BatchStatus.CANCELLED, timezone.now()
            fields += ["status", "finished_at"]
        job.save(update_fields=fields)
        audit_record(
            event_type=EventType.BATCH_CANCEL,
            actor=acting_user,
            department=job.department_id,
            obj=job,
            details={"processed": job.processed, "total": job.total},
        )
    return job


def _update(job: BatchJob, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    BatchJob._base_manager.filter(pk=job.pk).update(**fields)


def _finish(job: BatchJob, status: str, error: str = "") -> None:
    with transaction.atomic():
        _update(job, status=status, finished_at=timezone.now(), error=error[:500])
        audit_record(
            event_type=EventType.BATCH_FINISH,
            outcome=Outcome.SUCCESS if status == BatchStatus.DONE else Outcome.FAILURE,
            actor=job.api_key,
            department=job.department_id,
            obj=job,
            details={
                "status": status,
                "processed": job.processed,
                "succeeded": job.succeeded,
                "failed": job.failed,
                "error": error[:300],
            },
        )


def _extract_with_patience(*, engine, job: BatchJob, template, asset) -> Extraction:
    for _attempt in range(BUSY_RETRIES):
        try:
            return extraction_run(
                department=job.department,
                template=template,
                asset=asset,
                engine=engine,
                api_key=job.api_key,
                batch=job,
                request_id=f"batch-{str(job.pk)[:8]}",
            )
        except (EngineBusy, DecodeBusy) as busy:
            time.sleep(min(busy.retry_after, 30))
        except (AssetUnreadable, ImageBudgetExceeded) as refused:
            # This file cannot be shown to the model: a failed result, and the batch goes on.
            return _record_unusable(job, template, asset, str(refused))
    raise EngineBusy(queued=0, retry_after=30)


def batch_run(job_id, *, engine=None) -> BatchJob:
    """Process the job's remaining files one at a time (the runner thread; tests call it directly)."""
    from inference.registry.services import model_engine_for

    with all_departments(reason="a batch runner loads its job before it knows the department"):
        job = BatchJob.objects.select_related("department", "api_key", "template", "requested_by").get(pk=job_id)
    if job.is_finished:
        return job
    with department_scope(job.department):
        if job.cancel_requested:
            _finish(job, BatchStatus.CANCELLED)
            return job
        template = job.template
        if template is None or not template.is_active:
            _finish(job, BatchStatus.FAILED, "the template was removed or deactivated")
            return job
        handed_in = engine

        def engine_now():
            # The model it named, or the department's default — only one the requester and the
            # department may use now: asked again before every file, so a model disabled (or a
            # requester removed) while the batch runs refuses, recorded, and the batch stops.
            return handed_in or model_engine_for(
                subject=job.api_key or job.requested_by,
                department=job.department,
                requested=job.model_name or None,
                action=_batch_action(job.api_key),
                batch=str(job.pk),
            )

        try:
            first = engine_now()
        except (InferenceError, Refused) as exc:
            _finish(job, BatchStatus.FAILED, str(exc))
            return job
        if not job.model_name and handed_in is None:
            # A batch that named no model runs on the one the department's default resolved to
            # now, for every file: if that one is disabled meanwhile the batch stops, it never
            # goes on with another model (its results would not be comparable).
            _update(job, model_name=first.info().name)
        _update(job, status=BatchStatus.RUNNING, started_at=job.started_at or timezone.now())
        done = set(Extraction.objects.filter(batch=job).values_list("asset_ref", flat=True))
        for asset_id in job.asset_ids:
            if BatchJob._base_manager.filter(pk=job.pk, cancel_requested=True).exists():
                _finish(job, BatchStatus.CANCELLED)
                return job
            if asset_id in done:
                continue
            try:
                engine = engine_now()
            except (InferenceError, Refused) as exc:
                _finish(job, BatchStatus.FAILED, str(exc))
                return job
            try:
                asset = asset_get(department=job.department, asset_id=asset_id, actor=job.api_key, purpose="batch")
            except Exception:  # AssetNotFound (audited): gone or never ours
                _record_missing(job, template, asset_id)
                continue
            try:
                extraction = _extract_with_patience(engine=engine, job=job, template=template, asset=asset)
            except InferenceError as exc:
                _finish(job, BatchStatus.FAILED, str(exc))
                return job
            valid = extraction.status == ExtractionStatus.VALID
            _update(
                job,
                processed=job.processed + 1,
                succeeded=job.succeeded + int(valid),
                failed=job.failed + int(not valid),
            )
        _finish(job, BatchStatus.DONE)
    return job


def _record_unusable(job: BatchJob, template, asset, problem: str) -> Extraction:
    with transaction.atomic():
        return Extraction.objects.create(
            department=job.department,
            **Extraction.source_fields(template, asset),
            batch=job,
            status=ExtractionStatus.FAILED,
            problems=[problem],
            api_key=job.api_key,
            created_by_name=job.created_by_name,
        )


def _record_missing(job: BatchJob, template, asset_id: str) -> None:
    with transaction.atomic():
        Extraction.objects.create(
            department=job.department,
            template=template,
            template_slug=template.slug,
            asset_ref=asset_id[:64],
            batch=job,
            status=ExtractionStatus.FAILED,
            problems=["no such file in this department"],
            api_key=job.api_key,
            created_by_name=job.created_by_name,
        )
        _update(job, processed=job.processed + 1, failed=job.failed + 1)


def batch_resume_interrupted() -> int:
    """Start every queued or running job that no thread of this process is running."""
    with all_departments(reason="resume batch jobs interrupted by a restart, in every department"):
        ids = list(
            BatchJob.objects.filter(status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]).values_list("pk", flat=True)
        )
    for job_id in ids:
        batch_start(job_id)
    return len(ids)


def batch_results_jsonl(job: BatchJob) -> Iterator[bytes]:
    """One JSON line per result, in the order the files were given."""
    with department_scope(job.department_id):
        rows = list(Extraction.objects.filter(batch=job).order_by("created_at"))
    for extraction in rows:
        line = {
            "id": str(extraction.pk),
            "asset": extraction.asset_ref,
            "asset_sha256": extraction.asset_sha256,
            "template": extraction.template_slug,
            "status": extraction.status,
            "result": extraction.result,
            "flags": extraction.flags,
            "rule_outcomes": extraction.rule_outcomes,
            "problems": extraction.problems,
            "attempts": extraction.attempts,
            # Where the values were found, and the pages the model was shown (as the API's single
            # result answers them; absent from results made before grounding).
            "pages": (extraction.usage or {}).get("pages", []),
            "grounding": (extraction.usage or {}).get("grounding", {}),
            "created_at": extraction.created_at.isoformat(),
        }
        yield json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"
