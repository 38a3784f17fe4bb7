"""The process's engines: built from the settings, loaded once, their loads audited.

The engine itself (``inference.engine``) knows nothing of Django; this module is where the
settings, the model registry (which versions to load: docs/inference.md, "Model versions"),
the audit trail and the readiness check meet it. Request handlers call
``require_engine()`` (503 while loading), commands ``get_engine()`` (blocking). Tests and
benchmarks that bring their own engine install it with ``engine_override`` (all engines) or
``model_beside_override`` (one model beside the default engine, loaded or still loading).

The **default** engine serves the registry's active version. Where ``MODEL_MAX_LOADED`` > 1, the
versions the system administrator marked "load beside the active one" get an engine each (own
scheduler, own department-fair queue), loaded after the default one on the same thread, each
after a memory check; ``require_engine(name)`` finds one by its name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
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


@dataclass
class _Slot:
    """A version loaded beside the default one: its engine once loaded, or why it is not."""

    name: str
    manifest_sha256: str
    engine: Engine | None = None
    error: InferenceError | None = None
    progress: LoadProgress | None = None


# Versions loaded beside the default engine, by manifest SHA-256, in load order (guarded by
# _state_lock like the fields above).
_others: dict[str, _Slot] = {}


def _stage(stage: str, slot: _Slot | None = None) -> None:
    global _progress
    with _state_lock:
        current = slot.progress if slot is not None else _progress
        if current is None:
            current = LoadProgress(stage)
        else:
            current.stage, current.stage_started = stage, time.monotonic()
        if slot is not None:
            slot.progress = current
        else:
            _progress = current


def model_load_progress() -> dict[str, Any] | None:
    """The running load's stage and seconds, or None when no load is under way (the default
    model's load first, then the load of a model beside it, which also names it)."""
    progress = _progress
    if progress is not None:
        return progress.as_dict()
    for slot in list(_others.values()):
        progress = slot.progress
        if progress is not None:
            return {"model": slot.name, **progress.as_dict()}
    return None


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


def _version_options(version) -> dict[str, Any]:
    from django.conf import settings

    # The approved manifest is the pin: a file that differs from it refuses the load.
    return {
        "quantization": version.quantization or settings.MODEL_QUANTIZATION,
        "pinned_manifest_sha256": version.manifest_sha256,
        "name": version.name,
    }


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
        path = active.path
        options = _version_options(active)
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


# --- models beside the default one (MODEL_MAX_LOADED > 1) -----------------------------------------
# Before a further model loads, its weights must fit in what is free now: on CUDA the free GPU
# memory (all devices), on the CPU the RAM available to new processes (psutil). The need is the
# checkpoint's weight files × MEMORY_HEADROOM (activations, cache, the runtime's own buffers): a
# floor, not a promise — a half-precision checkpoint loaded as fp32 takes about twice its size,
# an NF4 load about a third.
MEMORY_HEADROOM = 1.2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
MODEL_DOES_NOT_FIT = (
    "The model '{name}' is not loaded: it needs about {needed} MiB ({weights} MiB of weights × {headroom:g}) "
    "and {where} has {free} MiB free. Unload a model (or lower MODEL_MAX_LOADED), or choose a smaller "
    "quantisation for it."
)
MODEL_NOT_LOADED = "The model '{model}' is not loaded on this server."
MODEL_STILL_LOADING = "The model '{model}' is still loading."
# Why the load failed (paths, library messages) is the operators' (the log, /readyz), not a caller's.
MODEL_LOAD_FAILED = "The model '{model}' could not be loaded on this server."


class ModelNotLoaded(ModelUnavailable):
    """A request named a model this process has not loaded (503: not available here now)."""

    code = "model_not_loaded"


class ModelStillLoading(ModelNotLoaded):
    """A request named a model beside the default one that is still loading (503). A kind of
    ModelNotLoaded, so that whether the caller may use that model is decided (and a refusal
    recorded) before it is told to wait."""

    code = ModelUnavailable.code


@dataclass(frozen=True)
class MemoryFree:
    bytes: int
    where: str  # "the GPU memory (CUDA)" or "the host's RAM"


def memory_free() -> MemoryFree:
    """What is free now for another model: CUDA's free memory over every device, else the host's
    available RAM."""
    import torch

    if torch.cuda.is_available():
        free = sum(torch.cuda.mem_get_info(index)[0] for index in range(torch.cuda.device_count()))
        return MemoryFree(int(free), "the GPU memory (CUDA)")
    import psutil

    return MemoryFree(int(psutil.virtual_memory().available), "the host's RAM")


# The memory check's input: tests inject a figure here; the check itself runs as in production.
memory_probe: Callable[[], MemoryFree] = memory_free


def checkpoint_bytes(path: str) -> int:
    """The size of a model directory's weight files."""
    from pathlib import Path

    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def memory_fit_check(*, name: str, weights_bytes: int, free: MemoryFree) -> None:
    """ModelLoadError (with the figures) unless ``weights_bytes`` × MEMORY_HEADROOM fits ``free``."""
    needed = int(weights_bytes * MEMORY_HEADROOM)
    if needed > free.bytes:
        mib = 1024 * 1024
        raise ModelLoadError(
            MODEL_DOES_NOT_FIT.format(
                name=name,
                needed=-(-needed // mib),
                weights=-(-weights_bytes // mib),
                headroom=MEMORY_HEADROOM,
                where=free.where,
                free=free.bytes // mib,
            )
        )


def load_engine_beside(version, slot: _Slot | None = None) -> Engine:
    """Load an approved version beside the default engine: approval and manifest checked, then
    the memory check, then the load, each refusal audited as a failed ``model.load``."""
    from django.conf import settings

    from inference.engine.loading import load_model

    _stage(LOAD_STAGE_WEIGHTS, slot)
    try:
        _active_version_check(version)
        memory_fit_check(name=version.name, weights_bytes=checkpoint_bytes(version.path), free=memory_probe())
        options = _version_options(version)
        loaded = load_model(version.path, trust_remote_code=settings.MODEL_TRUST_REMOTE_CODE, **options)
    except InferenceError as exc:
        logger.error("model %s not loaded beside the default one: %s", version.name, exc)
        record_model_load_failure(version.path, exc)
        raise
    _stage(LOAD_STAGE_RECORDING, slot)
    record_model_load(loaded)
    _stage(LOAD_STAGE_ENGINE, slot)
    return Engine(loaded, limits_from_settings())


def load_others() -> None:
    """Load the versions marked to be loaded beside the default one (at most MODEL_MAX_LOADED - 1),
    one after the other; a refused one is remembered and reported by /readyz, the others go on."""
    from django.conf import settings

    from inference.registry.selectors import model_versions_additional

    if settings.MODEL_MAX_LOADED <= 1:
        return
    try:
        with _load_lock:
            for version in model_versions_additional(settings.MODEL_MAX_LOADED - 1):
                with _state_lock:
                    if version.manifest_sha256 in _others or _stopping:
                        continue
                    slot = _others[version.manifest_sha256] = _Slot(
                        version.name, version.manifest_sha256, progress=LoadProgress(LOAD_STAGE_STARTING)
                    )
                try:
                    engine = load_engine_beside(version, slot)
                except InferenceError as exc:
                    with _state_lock:
                        slot.error, slot.progress = exc, None
                    continue
                with _state_lock:
                    slot.engine, slot.progress = engine, None
    finally:
        _close_thread_connection()


def engines_load() -> list[Engine]:
    """Load every engine now (blocking: commands, tests): the default one, then the others."""
    get_engine()
    load_others()
    return engines_loaded()


def engines_loaded() -> list[Engine]:
    """The loaded engines, the default one first (none while it loads)."""
    engine = _engine
    if engine is None:
        return []
    return [engine, *(slot.engine for slot in list(_others.values()) if slot.engine is not None)]


def models_report() -> list[dict[str, Any]]:
    """Each model this process loads, for /readyz: name, manifest, loaded or why not."""
    report = []
    engine = _engine
    if engine is not None:
        info = engine.info()
        report.append({"name": info.name, "manifest_sha256": info.manifest_sha256, "default": True, "ok": True})
    for slot in list(_others.values()):
        entry: dict[str, Any] = {"name": slot.name, "manifest_sha256": slot.manifest_sha256, "default": False}
        if slot.engine is not None:
            info = slot.engine.info()
            entry.update(ok=True, detail=f"{info.quantization} on {info.device}")
        elif slot.error is not None:
            entry.update(ok=False, detail=f"load failed: {slot.error}")
        else:
            entry.update(ok=False, detail=MODEL_LOADING)
        report.append(entry)
    return report


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
        load_others()
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
    if settings.MODEL_MAX_LOADED > 1:
        # The families of the registry's versions loaded at start (the active one and those beside it).
        from inference.engine.families import FAMILIES
        from inference.registry.selectors import model_versions_loaded

        try:
            for version in model_versions_loaded(settings.MODEL_MAX_LOADED):
                other = FAMILIES.get(version.family)
                if other is not None and not other.remote_code:
                    model_class(other)
        except Exception as exc:
            logger.debug("model code of the registry's versions not imported ahead of the load: %s", exc)
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
        loading = [slot.name for slot in list(_others.values()) if slot.engine is None and slot.error is None]
        if loading:
            return False, f"{MODEL_LOADING}: {', '.join(loading)}"
        # The loading thread publishes the default engine before it reads which models go beside
        # it: until it is done, "ready" could be answered with the others not yet begun.
        loader = _loading_thread
        if loader is not None and loader.is_alive() and loader is not threading.current_thread():
            return False, MODEL_LOADING
        info = engine.info()
        # A family served one request at a time (no per-step batching) says so here.
        note = f"; {info.scheduling_note}" if getattr(info, "scheduling", "") == "one_at_a_time" else ""
        detail = f"{info.name} ({info.quantization} on {info.device}{note})"
        others = [slot for slot in list(_others.values())]
        if others:
            # A model beside the default one that could not load leaves the default serving.
            detail += "; " + "; ".join(
                f"{slot.name} ({'loaded' if slot.engine is not None else f'load failed: {slot.error}'})"
                for slot in others
            )
        return True, detail
    error = _engine_error
    if error is not None:
        return False, f"load failed: {error}"
    start_loading()
    return False, MODEL_LOADING


model_readiness.progress = model_load_progress  # type: ignore[attr-defined]  (read by config.health)


def _models_for_readyz() -> list[dict[str, Any]] | None:
    """/readyz's list of models where several may be loaded (None with MODEL_MAX_LOADED = 1: the
    answer stays as it was, the check's detail names the one model)."""
    from django.conf import settings

    return models_report() if settings.MODEL_MAX_LOADED > 1 or _others else None


model_readiness.models = _models_for_readyz  # type: ignore[attr-defined]  (read by config.health)


def require_engine(model: str | None = None) -> Engine:
    """For request handlers: the default engine, or the loaded one named ``model``; or
    ModelUnavailable (503) while it loads or the process stops (a new turn is refused once a
    shutdown began: inference.shutdown), ModelNotLoaded for a name this process has not loaded.

    Who may use which model is not decided here: ``inference.registry.services.model_engine_for``
    asks the registry and records refusals."""
    if _stopping:
        raise ModelUnavailable(_stopping)
    engine = _engine
    if engine is None:
        _ready, detail = model_readiness()
        engine = _engine
        if engine is None:
            raise ModelUnavailable(detail)
    if not model or engine.info().name == model:
        return engine
    for slot in list(_others.values()):
        if slot.engine is not None and slot.engine.info().name == model:
            return slot.engine
        if slot.name == model:
            if slot.error is not None:
                raise ModelNotLoaded(MODEL_LOAD_FAILED.format(model=model))
            raise ModelStillLoading(MODEL_STILL_LOADING.format(model=model))
    raise ModelNotLoaded(MODEL_NOT_LOADED.format(model=model))


def stopping_set(reason: str) -> None:
    """From now on no new turn is taken (``reason`` is what callers and /readyz are told); ""
    takes turns again (tests)."""
    global _stopping
    with _state_lock:
        _stopping = reason


def reset_engine() -> None:
    """Shut the process's engines down and forget them (a reload after the model changed; tests)."""
    global _engine, _engine_error, _loading_thread
    with _state_lock:
        thread, _loading_thread = _loading_thread, None
    if thread is not None:
        thread.join(60)
    with _state_lock:
        engine, _engine, _engine_error = _engine, None, None
        others = [slot.engine for slot in _others.values() if slot.engine is not None]
        _others.clear()
    for stopped in [engine, *others]:
        if stopped is not None:
            stopped.shutdown()


@contextmanager
def engine_override(engine: Engine | None, others: tuple[Engine, ...] = ()) -> Iterator[Engine | None]:
    """Serve ``engine`` as the process's default engine inside the block (``None``: as if still
    loading), and ``others`` as the models loaded beside it.

    For tests and benchmarks that build their own engines; the previous state comes back after,
    and the caller keeps owning (and shuts down) the engines. Overrides nest.
    """
    global _engine, _engine_error, _loading_thread, _others
    # A load already under way would install its engine over the override when it finishes.
    running = _loading_thread
    if running is not None and running is not threading.current_thread():
        running.join()
    # What start_loading sees while the override holds: "a load was started", so none starts.
    # A finished thread, because reset_engine joins it (the caller's own thread cannot be joined).
    placeholder = threading.Thread(name="inference-engine-override")
    placeholder.start()
    placeholder.join()
    installed = {
        other.info().manifest_sha256: _Slot(other.info().name, other.info().manifest_sha256, engine=other)
        for other in others
    }
    with _state_lock:
        saved = _engine, _engine_error, _loading_thread, _others
        _engine, _engine_error, _loading_thread, _others = engine, None, placeholder, installed
    try:
        yield engine
    finally:
        with _state_lock:
            # An engine loaded inside the block (get_engine() with a None override) is not the
            # caller's: shut it down rather than leak its worker threads.
            stray = [_engine] if _engine is not engine and _engine is not saved[0] else []
            stray += [s.engine for s in _others.values() if s.engine is not None and s.engine not in others]
            _engine, _engine_error, _loading_thread, _others = saved
        for engine_left in stray:
            if engine_left is not None:
                engine_left.shutdown()


@contextmanager
def model_beside_override(name: str, manifest_sha256: str, engine: Engine | None = None) -> Iterator[Engine | None]:
    """Inside the block, the model ``name`` (manifest ``manifest_sha256``) is one loaded beside the
    default engine: served by ``engine``, or, with ``None``, still loading (``require_engine(name)``
    answers ModelStillLoading, /readyz says it loads).

    For tests that need one model's state beside the default engine (``engine_override`` sets them
    all). The default engine and the other models stay as they are; whatever stood for that
    manifest before comes back after, and the caller keeps owning (and shuts down) ``engine``,
    which must be that model (ValueError otherwise). Nests with ``engine_override``.
    """
    if engine is not None and (engine.info().name, engine.info().manifest_sha256) != (name, manifest_sha256):
        raise ValueError(f"the engine serves {engine.info().name} ({engine.info().manifest_sha256}), not {name}")
    slot = _Slot(
        name, manifest_sha256, engine=engine, progress=LoadProgress(LOAD_STAGE_STARTING) if engine is None else None
    )
    with _state_lock:
        others = _others
        previous = others.get(manifest_sha256)
        others[manifest_sha256] = slot
    try:
        yield engine
    finally:
        with _state_lock:
            # Only our own entry is put back: a reset_engine() inside the block has forgotten it.
            if others.get(manifest_sha256) is slot:
                if previous is None:
                    del others[manifest_sha256]
                else:
                    others[manifest_sha256] = previous
