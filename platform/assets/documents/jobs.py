"""The text-layer job: made at upload, run by a small pool of worker threads in the process.

``text_layer_create`` (called by ``assets.services`` when an upload is stored) adds a ``pending``
row in the upload's transaction and queues it after commit. Workers (``TEXT_LAYER_WORKERS``,
default 1; 0 = none in this process, the test profile's default) take one job at a time, so
OCR never holds more than that many CPU-heavy calls (onnxruntime releases the GIL while it
computes). Each job runs as batch jobs do (``inference/extraction/batch_jobs.py``): its own
request context for the audit trail (``text-<id>``, attributed to ``system``), the thread's DB
connection closed when it ends.

A job is claimed (``running``, ``runner`` = this process, ``heartbeat_at`` updated after each
page) under a row lock, so two processes never read the same file. A job whose runner is gone —
a process on this host that no longer exists, or no progress for ``_stale_seconds()`` — is
*abandoned*: the first look at it (the file list's status poll, the detail page, the API, the
start-up sweep of the first request) queues it again. A job interrupted ``MAX_ATTEMPTS`` times
ends ``failed`` (``interrupted``) rather than trying forever. On SIGTERM
(``text_layer_sigterm_install``) and on a normal exit (``atexit``) the workers stop after the
page in hand and hand their job back (``pending``, runner ``HANDED_BACK``), so the next start
reads it without counting an attempt.

Identical bytes uploaded again (a new reference to the same blob) copy the finished layer of
another upload of the same blob (re-sealed under the new row's key) instead of reading again.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from assets.documents.models import TextLayer, TextLayerStatus
from assets.documents.pages import TextSource
from assets.documents.text_layer import TEXT_EXTRACTORS, TextLayerRefused, TextLimits, page_to_json
from assets.models import Asset
from compliance.context import RequestContext, request_context
from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.tenancy import all_departments, department_scope

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RUNNER = f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
# ``runner`` of a job handed back by a stopping process: any look may queue it again at once.
HANDED_BACK = "handed back"
IDLE_SECONDS = 30.0  # an idle worker ends after this; the next job starts a new one
STOP_JOIN_SECONDS = 5.0

_queue: queue.Queue[str] = queue.Queue()
_lock = threading.Lock()
_queued: set[str] = set()
_active: set[str] = set()
_workers: list[threading.Thread] = []
_stop = threading.Event()
_swept = False


class _Stopping(Exception):
    """The process is stopping: hand the job back."""


class _Busy(Exception):
    """No decode slot freed up: try the job again a little later."""


class _Gone(Exception):
    """The row is gone (deleted with its file) or another process took the job: write nothing."""


def _stale_seconds() -> float:
    return max(120.0, 3 * float(settings.OCR_PAGE_SECONDS))


# --- creating and queueing ----------------------------------------------------------------------


def text_layer_create(asset: Asset) -> TextLayer:
    """A pending text layer for a new upload, queued once the upload commits. Inside the
    upload's transaction: the row exists exactly when the upload does."""
    # ``runner`` names the process that queues it: if that process dies first, the job is abandoned.
    layer = TextLayer(asset=asset, department_id=asset.department_id, pages_total=asset.page_count, runner=RUNNER)
    layer.save()
    transaction.on_commit(lambda: text_layer_enqueue(layer.pk))
    return layer


def text_layer_enqueue(layer_id: Any) -> bool:
    """Queue a job for this process's workers (starting them as needed); False when this
    process runs none (``TEXT_LAYER_WORKERS=0``) or is stopping."""
    size = int(settings.TEXT_LAYER_WORKERS)
    if size <= 0 or _stop.is_set():
        return False
    key = str(layer_id)
    with _lock:
        if key in _queued or key in _active:
            return True
        _queued.add(key)
        _workers[:] = [worker for worker in _workers if worker.is_alive()]
        while len(_workers) < size:
            worker = threading.Thread(target=_work, name=f"text-layer-{len(_workers) + 1}", daemon=True)
            _workers.append(worker)
            worker.start()
        _queue.put(key)  # under the lock: an idle worker never leaves between the check and this
    return True


def _work() -> None:
    idle_since = time.monotonic()
    while not _stop.is_set():
        try:
            key = _queue.get(timeout=0.25)
        except queue.Empty:
            with _lock:
                if time.monotonic() - idle_since > IDLE_SECONDS and _queue.empty():
                    _workers[:] = [worker for worker in _workers if worker is not threading.current_thread()]
                    return
            continue
        with _lock:
            _queued.discard(key)
            _active.add(key)
        try:
            with request_context(RequestContext(request_id=f"text-{key[:8]}")):
                text_layer_run(key)
        except Exception:
            logger.exception("text layer %s crashed", key)
        finally:
            connections.close_all()
            with _lock:
                _active.discard(key)
            idle_since = time.monotonic()


def text_layer_workers_stop(timeout: float = STOP_JOIN_SECONDS) -> None:
    """Stop the workers after the page in hand (their jobs go back to ``pending``)."""
    _stop.set()
    deadline = time.monotonic() + timeout
    for worker in list(_workers):
        worker.join(max(0.0, deadline - time.monotonic()))


atexit.register(text_layer_workers_stop)


def text_layer_sigterm_install() -> None:
    """Stop the workers on SIGTERM, then let SIGTERM do what it did before. Needed besides
    ``atexit``: uvicorn (``manage.py serve``) drains, puts back the handler it found at start —
    this one — and raises SIGTERM again, whose default action ends the process without ``atexit``.
    Main thread only (``AssetsConfig.ready``), where Python allows signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        text_layer_workers_stop()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


# --- abandoned jobs -------------------------------------------------------------------------------


def _runner_gone(runner: str) -> bool:
    if not runner:
        return True
    if runner == RUNNER:
        return False
    host, _, rest = runner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname()[:80] or not pid.isdigit():
        return False  # another host's process: only the heartbeat can tell
    if int(pid) == os.getpid():
        return True  # this pid, an earlier process (another token)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def text_layer_abandoned(layer: TextLayer) -> bool:
    """Whether nobody is reading this unfinished layer any more."""
    if layer.is_finished:
        return False
    key = str(layer.pk)
    with _lock:
        if key in _queued or key in _active:
            return False
    since = layer.heartbeat_at or layer.created_at
    stale = since is None or timezone.now() - since > timedelta(seconds=_stale_seconds())
    if layer.status == TextLayerStatus.PENDING:
        # Queued by a process that is gone (or one that handed it back), or waiting too long.
        return layer.runner == HANDED_BACK or (layer.runner != RUNNER and _runner_gone(layer.runner)) or stale
    return layer.runner == RUNNER or _runner_gone(layer.runner) or stale


def text_layer_look(asset: Asset, *, pages: bool = True) -> TextLayer:
    """The upload's text layer for a status read (inside the department's scope): one is made
    for an upload that has none (stored before text layers existed), and an abandoned one is
    queued again in this process. ``pages=False``: the sealed pages are not read."""
    layers = TextLayer.objects.filter(asset=asset)
    layer = (layers if pages else layers.defer("pages")).first()
    if layer is None:
        with transaction.atomic():
            layer = text_layer_create(asset)
        return layer
    if text_layer_abandoned(layer):
        text_layer_enqueue(layer.pk)
    return layer


def text_layer_resume_abandoned() -> int:
    """Queue every abandoned job of every department (the start-up sweep); how many."""
    with all_departments(reason="the text-layer sweep resumes jobs left by a stopped process, in every department"):
        unfinished = list(TextLayer.objects.filter(status__in=[TextLayerStatus.PENDING, TextLayerStatus.RUNNING]))
    queued = 0
    for layer in unfinished:
        if text_layer_abandoned(layer) and text_layer_enqueue(layer.pk):
            queued += 1
    return queued


def text_layer_sweep_once(**_kwargs: Any) -> None:
    """Once per process, on its first request: resume abandoned jobs in the background."""
    global _swept
    if _swept or int(settings.TEXT_LAYER_WORKERS) <= 0:
        return
    _swept = True

    def sweep() -> None:
        try:
            text_layer_resume_abandoned()
        except Exception:
            logger.exception("text-layer sweep failed")
        finally:
            connections.close_all()

    threading.Thread(target=sweep, name="text-layer-sweep", daemon=True).start()


# --- running one job --------------------------------------------------------------------------------


def _claim(layer_id: str) -> TextLayer | None:
    """Lock the row and make it ours, if it is pending or abandoned."""
    with all_departments(reason="a text-layer worker loads its job before it knows the department"):
        department_id = TextLayer.objects.filter(pk=layer_id).values_list("department_id", flat=True).first()
    if department_id is None:
        return None  # the file was deleted meanwhile
    with transaction.atomic(), department_scope(department_id):
        layer = TextLayer.objects.select_for_update().filter(pk=layer_id).select_related("asset").first()
        if layer is None or layer.is_finished:
            return None
        if layer.status == TextLayerStatus.RUNNING and layer.runner != RUNNER:
            if not (_runner_gone(layer.runner) or _heartbeat_stale(layer)):
                return None  # another live process reads it
        if layer.attempts >= MAX_ATTEMPTS:
            _finish_failed(layer, TextLayerRefused("interrupted", attempts=layer.attempts))
            return None
        now = timezone.now()
        layer.status, layer.runner, layer.heartbeat_at = TextLayerStatus.RUNNING, RUNNER, now
        layer.started_at = layer.started_at or now
        layer.attempts += 1
        layer.pages_total = layer.asset.page_count
        layer.save(update_fields=["status", "runner", "heartbeat_at", "started_at", "attempts", "pages_total"])
        _audit(layer, Outcome.SUCCESS, {"status": "running", "pages": layer.pages_total, "attempt": layer.attempts})
    return layer


def _heartbeat_stale(layer: TextLayer) -> bool:
    since = layer.heartbeat_at or layer.created_at
    return since is None or timezone.now() - since > timedelta(seconds=_stale_seconds())


def _audit(layer: TextLayer, outcome: str, summary: dict[str, Any]) -> None:
    """The job's start or end: a system event on the file, with counts only (never any text)."""
    audit_record(
        event_type=EventType.ASSET_UPDATE,
        outcome=outcome,
        actor="system",
        department=layer.department_id,
        obj=layer.asset,
        details={"text_layer": summary},
    )


def _progress(layer: TextLayer, done: int) -> None:
    layer.pages_done = done
    still_ours = TextLayer._base_manager.filter(pk=layer.pk, runner=RUNNER)
    if not still_ours.update(pages_done=done, heartbeat_at=timezone.now()):
        raise _Gone()


def _release(layer: TextLayer) -> None:
    """Hand the job back (stopping, busy): pending again, this attempt not counted."""
    TextLayer._base_manager.filter(pk=layer.pk, runner=RUNNER).update(
        status=TextLayerStatus.PENDING, runner=HANDED_BACK, attempts=max(0, layer.attempts - 1), pages_done=0
    )


def _finish_failed(layer: TextLayer, refusal: TextLayerRefused) -> None:
    with transaction.atomic():
        layer.status, layer.finished_at = TextLayerStatus.FAILED, timezone.now()
        layer.failure, layer.failure_params = refusal.code, refusal.params
        layer.pages, layer.runner = None, ""
        updated = TextLayer._base_manager.filter(pk=layer.pk).update(
            status=layer.status,
            finished_at=layer.finished_at,
            failure=layer.failure,
            failure_params=layer.failure_params,
            pages=None,
            runner="",
        )
        if not updated:
            return  # deleted with its file meanwhile: nothing to record
        _audit(
            layer,
            Outcome.FAILURE,
            {"status": "failed", "reason": refusal.code, "pages": layer.pages_total, "pages_done": layer.pages_done},
        )


def _finish_done(layer: TextLayer, pages: list[dict[str, Any]], *, copied_from: str = "") -> None:
    sources = Counter(page["source"] for page in pages)
    with transaction.atomic():
        layer.status, layer.finished_at, layer.runner = TextLayerStatus.DONE, timezone.now(), ""
        layer.pages, layer.pages_done, layer.pages_total = pages, len(pages), len(pages)
        layer.sources = {source: sources.get(source, 0) for source in (s.value for s in TextSource)}
        layer.failure, layer.failure_params = "", {}
        layer.save(force_update=True)  # never inserted again if the file was deleted meanwhile
        summary: dict[str, Any] = {
            "status": "done",
            "pages": len(pages),
            "sources": layer.sources,
            "unusable": sum(1 for page in pages if not page["usable"]),
        }
        if copied_from:
            summary["copied_from"] = copied_from
        _audit(layer, Outcome.SUCCESS, summary)


def _sibling_pages(layer: TextLayer) -> tuple[str, list[dict[str, Any]]] | None:
    """The finished layer of another upload of the same bytes, if there is one."""
    siblings = Asset.objects.filter(storage_name=layer.asset.storage_name).exclude(pk=layer.asset_id)
    done = TextLayer.objects.filter(asset__in=siblings, status=TextLayerStatus.DONE).order_by("finished_at").first()
    return (str(done.asset_id), list(done.pages or [])) if done is not None else None


def text_layer_run(layer_id: Any) -> TextLayer | None:
    """Run one job to its end (a worker thread; tests may call it directly). Returns the layer
    as it ended, or None when it was not this process's to run."""
    layer = _claim(str(layer_id))
    if layer is None:
        return None
    asset = layer.asset
    with department_scope(layer.department_id):
        try:
            sibling = _sibling_pages(layer)
            if sibling is not None:
                _finish_done(layer, sibling[1], copied_from=sibling[0])
                return layer
            pages = _read_pages(layer, asset)
            _finish_done(layer, pages)
        except _Gone:
            return None
        except _Stopping:
            _release(layer)
        except _Busy:
            _release(layer)
            threading.Timer(5.0, text_layer_enqueue, args=(layer.pk,)).start()
        except TextLayerRefused as refusal:
            _finish_failed(layer, refusal)
        except Exception:
            if not TextLayer._base_manager.filter(pk=layer.pk).exists():
                return None  # deleted with its file while it was read (or finished)
            logger.exception("text layer of asset %s failed", asset.pk)
            _finish_failed(layer, TextLayerRefused("error"))
    return layer


def _read_pages(layer: TextLayer, asset: Asset) -> list[dict[str, Any]]:
    from assets import content
    from assets.reading import asset_open_reader
    from assets.services import asset_page_unusable_mark

    extractor = TEXT_EXTRACTORS.get(asset.content_type)
    if extractor is None:
        raise TextLayerRefused("unsupported")
    limits = TextLimits.from_settings()
    pages: list[dict[str, Any]] = []
    try:
        with asset_open_reader(asset) as reader:
            for page in extractor(reader, asset=asset, limits=limits):
                _progress(layer, len(pages) + 1)  # first: a deleted file's page is not marked
                if not page.usable and page.number not in (asset.unusable_pages or ()):
                    asset_page_unusable_mark(asset=asset, page=page.number)
                pages.append(page_to_json(page))
                if _stop.is_set():
                    raise _Stopping()
    except content.DecodeBusy:
        raise _Busy() from None
    return pages
