"""The process's engine: built from the settings, loaded once, its loads audited.

The engine itself (``inference.engine``) knows nothing of Django; this module is where the
settings, the model registry (which version to load: docs/inference.md, "Model versions"),
the audit trail and the readiness check meet it. Request handlers call
``require_engine()`` (503 while loading), commands ``get_engine()`` (blocking). Tests and
benchmarks that bring their own engine install it with ``engine_override``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from inference.engine.core import Engine, EngineLimits
from inference.engine.errors import MODEL_LOADING, InferenceError, ModelLoadError, ModelUnavailable
from inference.engine.loading import LoadedModel

logger = logging.getLogger(__name__)


def limits_from_settings() -> EngineLimits:
    from django.conf import settings

    return EngineLimits(
        max_concurrent=settings.MAX_CONCURRENT_GENERATIONS,
        max_batch=settings.MAX_BATCH_SIZE,
        max_queue=settings.MAX_QUEUE,
        max_new_tokens_cap=settings.MAX_NEW_TOKENS_CAP,
        default_max_new_tokens=settings.DEFAULT_MAX_NEW_TOKENS,
        timeout_seconds=float(settings.GENERATION_TIMEOUT_SECONDS),
        batch_window_seconds=settings.BATCH_WINDOW_MS / 1000,
        workers=settings.INFERENCE_WORKERS,
    )


# --- the process-wide engine ------------------------------------------------------------------
_engine: Engine | None = None
_engine_error: InferenceError | None = None
_engine_lock = threading.Lock()
_loading_thread: threading.Thread | None = None


def record_model_load(loaded: LoadedModel) -> None:
    """The audit entry for a model load (identity + manifest hash), attributed to the system."""
    from django.db import transaction

    from compliance.events import EventType, Outcome
    from compliance.services import audit_record

    details = {
        "path": str(loaded.path),
        "family": loaded.family,
        "manifest_sha256": loaded.manifest_sha256,
        "quantization": loaded.quantization,
        "quantization_reason": loaded.quantization_reason,
        "device": loaded.device,
        "is_demo": loaded.is_demo,
        "parameter_count": loaded.parameter_count,
        "load_seconds": round(loaded.load_seconds, 3),
    }
    with transaction.atomic():
        audit_record(
            event_type=EventType.MODEL_LOAD,
            outcome=Outcome.SUCCESS,
            actor="system",
            object_type="model",
            object_id=loaded.manifest_sha256,
            object_repr=loaded.name,
            details=details,
        )


def record_model_load_failure(path: str, error: InferenceError) -> None:
    from django.db import transaction

    from compliance.events import EventType, Outcome
    from compliance.services import audit_record

    with transaction.atomic():
        audit_record(
            event_type=EventType.MODEL_LOAD,
            outcome=Outcome.FAILURE,
            actor="system",
            object_type="model",
            object_repr=path[-255:],
            details={"path": path, "error": str(error), "code": error.code},
        )


VERSION_NOT_APPROVED_LOAD = "The active model version '{name}' ({sha256}) is not approved: it is not loaded."
VERSION_MANIFEST_CHANGED = (
    "The manifest of {path} is {actual}, not the approved version '{name}' ({sha256}): a changed directory "
    "is a new version, to be registered, approved and activated (docs/inference.md, 'Model versions')."
)


def _active_version_check(active) -> None:
    """Refuse an unapproved active version, and name the registry when the directory's manifest is
    no longer the approved one (load_model checks the pin and every file again)."""
    import hashlib
    from pathlib import Path

    from inference.engine.errors import ManifestError
    from inference.engine.manifest import MANIFEST_NAME

    if not active.is_approved:
        raise ModelLoadError(VERSION_NOT_APPROVED_LOAD.format(name=active.name, sha256=active.manifest_sha256))
    try:
        actual = hashlib.sha256((Path(active.path) / MANIFEST_NAME).read_bytes()).hexdigest()
    except OSError:
        return  # a missing directory or manifest: load_model names it
    if actual != active.manifest_sha256:
        raise ManifestError(
            VERSION_MANIFEST_CHANGED.format(
                path=active.path, actual=actual, name=active.name, sha256=active.manifest_sha256
            )
        )


def load_engine_from_settings() -> Engine:
    """Load the model registry's active version (or, on an installation's first start, MODEL_PATH,
    then registered as approved and active by the system), audit the outcome, build an engine."""
    from django.conf import settings

    from inference.engine.loading import load_model
    from inference.registry.selectors import model_version_active

    active = model_version_active()
    if active is None:
        path = str(settings.MODEL_PATH)
        options = {
            "quantization": settings.MODEL_QUANTIZATION,
            "pinned_manifest_sha256": settings.MODEL_MANIFEST_SHA256,
            "name": settings.MODEL_NAME,
        }
    else:
        # The approved manifest is the pin: a file that differs from it refuses the load.
        path = active.path
        options = {
            "quantization": active.quantization or settings.MODEL_QUANTIZATION,
            "pinned_manifest_sha256": active.manifest_sha256,
            "name": active.name,
        }
        if str(settings.MODEL_PATH) != active.path:
            logger.info("loading the registry's active model %s, not MODEL_PATH %s", active.path, settings.MODEL_PATH)
    try:
        if active is not None:
            _active_version_check(active)
        loaded = load_model(path, trust_remote_code=settings.MODEL_TRUST_REMOTE_CODE, **options)
    except InferenceError as exc:
        logger.error("model load refused: %s", exc)
        record_model_load_failure(path, exc)
        raise
    logger.info(
        "model %s loaded: %s on %s (%s) in %.1f s",
        loaded.name,
        loaded.quantization,
        loaded.device,
        loaded.quantization_reason,
        loaded.load_seconds,
    )
    if active is None:
        from inference.registry.services import model_installation_record

        model_installation_record(
            manifest_sha256=loaded.manifest_sha256, name=loaded.name, path=loaded.path, family=loaded.family
        )
    record_model_load(loaded)
    return Engine(loaded, limits_from_settings())


def get_engine() -> Engine:
    """The process's engine, loading it on first use; a failed load is remembered and re-raised."""
    global _engine, _engine_error
    if _engine is not None:
        return _engine
    with _engine_lock:
        if _engine is None:
            if _engine_error is not None:
                raise _engine_error
            try:
                _engine = load_engine_from_settings()
            except InferenceError as exc:
                _engine_error = exc
                raise
            finally:
                _close_thread_connection()
        return _engine


def _close_thread_connection() -> None:
    # A load on a background thread opened its own database connection for the audit entry.
    if threading.current_thread() is not threading.main_thread():
        from django.db import connections

        connections.close_all()


def start_loading() -> None:
    """Begin loading in the background (idempotent): /readyz stays "loading" until it is done."""
    global _loading_thread
    with _engine_lock:
        if _engine is not None or _engine_error is not None or _loading_thread is not None:
            return
        _loading_thread = threading.Thread(target=_load_quietly, name="inference-model-load", daemon=True)
        _loading_thread.start()


def _load_quietly() -> None:
    try:
        get_engine()
    except InferenceError:
        pass  # remembered in _engine_error and reported by the readiness check
    except Exception:
        logger.exception("model load crashed")


def current_engine() -> Engine | None:
    """The engine if it is loaded, without triggering a load (for stats and metrics)."""
    return _engine


def model_readiness() -> tuple[bool, str]:
    """The /readyz check: ready once the model is loaded; the first poll starts the load."""
    if _engine is not None:
        info = _engine.info()
        # A family served one request at a time (no per-step batching) says so here.
        note = f"; {info.scheduling_note}" if getattr(info, "scheduling", "") == "one_at_a_time" else ""
        return True, f"{info.name} ({info.quantization} on {info.device}{note})"
    if _engine_error is not None:
        return False, f"load failed: {_engine_error}"
    start_loading()
    return False, MODEL_LOADING


def require_engine() -> Engine:
    """For request handlers: the engine, or ModelUnavailable (503) while it loads."""
    if _engine is not None:
        return _engine
    ready, detail = model_readiness()
    if ready and _engine is not None:
        return _engine
    raise ModelUnavailable(detail)


def reset_engine() -> None:
    """Shut the process's engine down and forget it (a reload after the model changed; tests)."""
    global _engine, _engine_error, _loading_thread
    with _engine_lock:
        engine, _engine, _engine_error = _engine, None, None
        thread, _loading_thread = _loading_thread, None
    if thread is not None:
        thread.join(60)
    if engine is not None:
        engine.shutdown()


@contextmanager
def engine_override(engine: Engine | None) -> Iterator[Engine | None]:
    """Serve ``engine`` as the process's engine inside the block (``None``: as if still loading).

    For tests and benchmarks that build their own engine; the previous state comes back after,
    and the caller keeps owning (and shuts down) ``engine``. Overrides nest.
    """
    global _engine, _engine_error, _loading_thread
    # A load already under way would install its engine over the override when it finishes.
    running = _loading_thread
    if running is not None and running is not threading.current_thread():
        running.join()
    # What start_loading sees while the override holds: "a load was started", so none starts.
    # A finished thread, because reset_engine joins it (the caller's own thread cannot be joined).
    placeholder = threading.Thread(name="inference-engine-override")
    placeholder.start()
    placeholder.join()
    with _engine_lock:
        saved = _engine, _engine_error, _loading_thread
        _engine, _engine_error, _loading_thread = engine, None, placeholder
    try:
        yield engine
    finally:
        with _engine_lock:
            # An engine loaded inside the block (get_engine() with a None override) is not the
            # caller's: shut it down rather than leak its worker threads.
            stray = _engine if _engine is not engine and _engine is not saved[0] else None
            _engine, _engine_error, _loading_thread = saved
        if stray is not None:
            stray.shutdown()
