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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
# Two locks: ``_state_lock`` guards the fields below and is only ever held for a moment, so that
# /readyz, require_engine() and start_loading() answer at once while a load takes minutes;
# ``_load_lock`` is held for a whole load, so that concurrent get_engine() callers load once.
_engine: Engine | None = None
_engine_error: InferenceError | None = None
_state_lock = threading.Lock()
_load_lock = threading.Lock()
_loading_thread: threading.Thread | None = None
_progress: LoadProgress | None = None
_stopping: str = ""  # why the process takes no new turns (set by inference.shutdown), or ""

# What /readyz reports while the model loads (the loader itself reports no finer progress).
LOAD_STAGE_STARTING = "starting"
LOAD_STAGE_WEIGHTS = "verifying the files and loading the weights"
LOAD_STAGE_RECORDING = "recording the load"
LOAD_STAGE_ENGINE = "starting the engine"


@dataclass
class LoadProgress:
    stage: str
    started: float = field(default_factory=time.monotonic)
    stage_started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "stage": self.stage,
            "elapsed_seconds": round(now - self.started, 1),
            "stage_elapsed_seconds": round(now - self.stage_started, 1),
        }


def _stage(stage: str) -> None:
    global _progress
    with _state_lock:
        if _progress is None:
            _progress = LoadProgress(stage)
        else:
            _progress.stage, _progress.stage_started = stage, time.monotonic()


def model_load_progress() -> dict[str, Any] | None:
    """The running load's stage and seconds, or None when no load is under way."""
    progress = _progress
    return progress.as_dict() if progress is not None else None


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
    _stage(LOAD_STAGE_WEIGHTS)
    _test_profile_load_delay()
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
    _stage(LOAD_STAGE_RECORDING)
    if active is None:
        from inference.registry.services import model_installation_record

        model_installation_record(
            manifest_sha256=loaded.manifest_sha256, name=loaded.name, path=loaded.path, family=loaded.family
        )
    record_model_load(loaded)
    _stage(LOAD_STAGE_ENGINE)
    return Engine(loaded, limits_from_settings())


# The test profile's deliberately slow load: tests/inference/test_never_stalls.py proves the
# server answers while a load takes this long (a real load takes minutes; the demo model, less
# than a second). Read only in the test profile.
TEST_LOAD_DELAY_VARIABLE = "TEST_MODEL_LOAD_DELAY_SECONDS"


def _test_profile_load_delay() -> None:
    import os

    from django.conf import settings

    if settings.PROFILE == "test":
        seconds = float(os.environ.get(TEST_LOAD_DELAY_VARIABLE, "0") or 0)
        if seconds > 0:
            threading.Event().wait(seconds)


def get_engine() -> Engine:
    """The process's engine, loading it on first use; a failed load is remembered and re-raised."""
    global _engine, _engine_error, _progress
    engine = _engine
    if engine is not None:
        return engine
    with _load_lock:
        with _state_lock:
            if _engine is not None:
                return _engine
            if _engine_error is not None:
                raise _engine_error
            _progress = _progress or LoadProgress(LOAD_STAGE_STARTING)  # start_loading may have set it
        try:
            engine = load_engine_from_settings()
        except InferenceError as exc:
            with _state_lock:
                _engine_error = exc
            raise
        finally:
            with _state_lock:
                _progress = None
            _close_thread_connection()
        with _state_lock:
            _engine = engine
        return engine


def _close_thread_connection() -> None:
    # A load on a background thread opened its own database connection for the audit entry.
    if threading.current_thread() is not threading.main_thread():
        from django.db import connections

        connections.close_all()


def start_loading() -> None:
    """Begin loading in the background (idempotent): /readyz stays "loading" until it is done.

    Never waits for a load under way (only the state lock, held for a moment), so a request that
    asks during a load is answered at once.
    """
    global _loading_thread, _progress
    with _state_lock:
        if _engine is not None or _engine_error is not None or _loading_thread is not None or _stopping:
            return
        _progress = LoadProgress(LOAD_STAGE_STARTING)  # "loading" from the poll that starts it
        _loading_thread = threading.Thread(target=_load_quietly, name="inference-model-load", daemon=True)
        _loading_thread.start()
    # The serving process's engine is being built: under daphne (make run) the drain on SIGTERM
    # hooks into its reactor here, the one place both its start-up and the first poll pass
    # (manage.py serve drains from its own server class).
    from inference.shutdown import daphne_drain_install

    daphne_drain_install()


def _load_quietly() -> None:
    try:
        get_engine()
    except InferenceError:
        pass  # remembered in _engine_error and reported by the readiness check
    except Exception:
        logger.exception("model load crashed")


def model_code_import() -> float:
    """Import torch, transformers and the configured family's model class now; returns seconds.

    Importing them is most of what holds the GIL during a load (a C extension's module
    initialisation and unmarshalling bytecode hold it for up to half a second at a time, measured
    on the bench-size demo model), while reading and hashing the weights mostly release it.
    ``manage.py serve`` calls this before the server listens, so that the load that follows in the
    background leaves the event loop answering (/healthz within milliseconds instead of stalls of
    0.2-0.8 s). A configuration it cannot read is left for the load itself to report.
    """
    import json
    from pathlib import Path

    from django.conf import settings

    started = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoProcessor, AutoTokenizer  # noqa: F401

    import inference.engine.continuous
    import inference.engine.generation  # noqa: F401
    from inference.engine.families import family_for_config, model_class

    try:
        config = json.loads((Path(settings.MODEL_PATH) / "config.json").read_text(encoding="utf-8"))
        family = family_for_config(config)
        if not family.remote_code:  # a remote-code class is the model directory's own code: not before its check
            model_class(family)
    except Exception as exc:  # the load itself reports it, with its audit entry
        logger.debug("model code not imported ahead of the load: %s", exc)
    return time.perf_counter() - started


def current_engine() -> Engine | None:
    """The engine if it is loaded, without triggering a load (for stats and metrics)."""
    return _engine


def model_readiness() -> tuple[bool, str]:
    """The /readyz check: ready once the model is loaded; the first poll starts the load.

    While loading, /readyz adds ``model_load_progress()`` (the ``progress`` attribute below).
    """
    if _stopping:
        return False, _stopping
    engine = _engine
    if engine is not None:
        info = engine.info()
        # A family served one request at a time (no per-step batching) says so here.
        note = f"; {info.scheduling_note}" if getattr(info, "scheduling", "") == "one_at_a_time" else ""
        return True, f"{info.name} ({info.quantization} on {info.device}{note})"
    error = _engine_error
    if error is not None:
        return False, f"load failed: {error}"
    start_loading()
    return False, MODEL_LOADING


model_readiness.progress = model_load_progress  # type: ignore[attr-defined]  (read by config.health)


def require_engine() -> Engine:
    """For request handlers: the engine, or ModelUnavailable (503) while it loads or the process
    stops (a new turn is refused once a shutdown began: inference.shutdown)."""
    if _stopping:
        raise ModelUnavailable(_stopping)
    engine = _engine
    if engine is not None:
        return engine
    ready, detail = model_readiness()
    engine = _engine
    if ready and engine is not None:
        return engine
    raise ModelUnavailable(detail)


def stopping_set(reason: str) -> None:
    """From now on no new turn is taken (``reason`` is what callers and /readyz are told); ""
    takes turns again (tests)."""
    global _stopping
    with _state_lock:
        _stopping = reason


def reset_engine() -> None:
    """Shut the process's engine down and forget it (a reload after the model changed; tests)."""
    global _engine, _engine_error, _loading_thread
    with _state_lock:
        thread, _loading_thread = _loading_thread, None
    if thread is not None:
        thread.join(60)
    with _state_lock:
        engine, _engine, _engine_error = _engine, None, None
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
    with _state_lock:
        saved = _engine, _engine_error, _loading_thread
        _engine, _engine_error, _loading_thread = engine, None, placeholder
    try:
        yield engine
    finally:
        with _state_lock:
            # An engine loaded inside the block (get_engine() with a None override) is not the
            # caller's: shut it down rather than leak its worker threads.
            stray = _engine if _engine is not engine and _engine is not saved[0] else None
            _engine, _engine_error, _loading_thread = saved
        if stray is not None:
            stray.shutdown()
