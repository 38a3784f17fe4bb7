"""The engine: one loaded model per process, a scheduler in front of it, and its public API.

Callers (the chat consumer, the REST and OpenAI-compatible APIs, commands) use only this:

    from inference.engine import get_engine
    from inference.requests import Message

    engine = get_engine()                      # loads on first use (blocking), then shared
    handle = engine.submit(
        [Message("system", "You read invoices."), Message("user", "Total?", images=(pil_image,))],
        department=department.slug,            # the fairness key
        max_new_tokens=256, temperature=0.0, stop=["</answer>"],
    )                                          # InvalidRequest / EngineBusy raised here
    async for event in handle: ...             # Queued / Token / Done / Error (inference.handle)
    handle.cancel()                            # stop button; leaving the async for also cancels

See docs/inference.md for the whole contract.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from inference.errors import MODEL_LOADING, InferenceError, ModelUnavailable
from inference.handle import Done, GenerationHandle, Result
from inference.loader import LoadedModel
from inference.requests import GenerationRequest, Message, validate_messages, validate_params
from inference.scheduler import Pending, Scheduler

logger = logging.getLogger(__name__)

DEMO_LABEL = "demo model — random weights, answers are noise"
_THROUGHPUT_WINDOW = 60.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    quantization: str
    quantization_reason: str
    device: str
    is_demo: bool
    label: str  # what a UI shows next to the model name ("" for a real model)
    manifest_sha256: str
    parameter_count: int
    max_context: int
    max_new_tokens_cap: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EngineLimits:
    max_concurrent: int = 8
    max_batch: int = 8
    max_queue: int = 32
    max_new_tokens_cap: int = 2048
    default_max_new_tokens: int = 512
    timeout_seconds: float = 300.0
    batch_window_seconds: float = 0.015
    workers: int = 1

    @classmethod
    def from_settings(cls) -> EngineLimits:
        from django.conf import settings

        return cls(
            max_concurrent=settings.MAX_CONCURRENT_GENERATIONS,
            max_batch=settings.MAX_BATCH_SIZE,
            max_queue=settings.MAX_QUEUE,
            max_new_tokens_cap=settings.MAX_NEW_TOKENS_CAP,
            default_max_new_tokens=settings.DEFAULT_MAX_NEW_TOKENS,
            timeout_seconds=float(settings.GENERATION_TIMEOUT_SECONDS),
            batch_window_seconds=settings.BATCH_WINDOW_MS / 1000,
            workers=settings.INFERENCE_WORKERS,
        )


class Engine:
    def __init__(self, loaded: LoadedModel, limits: EngineLimits | None = None) -> None:
        self.loaded = loaded
        self.limits = limits or EngineLimits()
        self._stats_lock = threading.Lock()
        self._finished: deque[tuple[float, int]] = deque()  # (end time, completion tokens)
        self.requests_total = 0
        self.completion_tokens_total = 0
        self.prompt_tokens_total = 0
        self.errors_total = 0
        self.scheduler = Scheduler(
            self._run,
            max_concurrent=self.limits.max_concurrent,
            max_queue=self.limits.max_queue,
            max_batch=self.limits.max_batch,
            batch_window=self.limits.batch_window_seconds,
            workers=self.limits.workers,
        )

    # --- the API --------------------------------------------------------------------------------
    def submit(
        self,
        messages: list[Message] | tuple[Message, ...],
        *,
        department: str = "",
        max_new_tokens: Any = None,
        temperature: Any = 0.0,
        top_p: Any = 1.0,
        stop: Any = None,
        seed: Any = None,
        min_new_tokens: Any = 0,
        request_id: str | None = None,
    ) -> GenerationHandle:
        """Validate and queue a request; raise InvalidRequest or EngineBusy straight away."""
        params = validate_params(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            min_new_tokens=min_new_tokens,
            cap=self.limits.max_new_tokens_cap,
            default_max_new_tokens=self.limits.default_max_new_tokens,
        )
        request = GenerationRequest(messages=validate_messages(messages), params=params, department=str(department))
        if request_id:
            request.request_id = request_id
        handle = GenerationHandle(
            request.request_id, timeout=self.limits.timeout_seconds, on_cancel=self.scheduler.withdraw
        )
        self.scheduler.submit(request, handle)
        return handle

    def generate(self, messages: list[Message] | tuple[Message, ...], **kwargs: Any) -> Result:
        """Blocking convenience: submit and wait for the whole answer."""
        return self.submit(messages, **kwargs).result()

    def info(self) -> ModelInfo:
        loaded = self.loaded
        return ModelInfo(
            name=loaded.name,
            family=loaded.family,
            quantization=loaded.quantization,
            quantization_reason=loaded.quantization_reason,
            device=loaded.device,
            is_demo=loaded.is_demo,
            label=DEMO_LABEL if loaded.is_demo else "",
            manifest_sha256=loaded.manifest_sha256,
            parameter_count=loaded.parameter_count,
            max_context=loaded.max_positions,
            max_new_tokens_cap=self.limits.max_new_tokens_cap,
        )

    def stats(self, *, include_device: bool = True) -> dict[str, Any]:
        now = time.perf_counter()
        with self._stats_lock:
            while self._finished and now - self._finished[0][0] > _THROUGHPUT_WINDOW:
                self._finished.popleft()
            recent = sum(tokens for _, tokens in self._finished)
            counters = {
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
                "prompt_tokens_total": self.prompt_tokens_total,
                "completion_tokens_total": self.completion_tokens_total,
            }
        stats: dict[str, Any] = {
            "model": self.info().as_dict(),
            "queue_depth": self.scheduler.queue_depth(),
            "queue_by_department": self.scheduler.queue_by_department(),
            "active_generations": self.scheduler.active(),
            "max_concurrent_generations": self.limits.max_concurrent,
            "max_queue": self.limits.max_queue,
            "tokens_per_second": round(recent / _THROUGHPUT_WINDOW, 3),
            **counters,
        }
        if include_device:
            from inference.device_stats import device_stats

            stats["device"] = device_stats()
        return stats

    def shutdown(self) -> None:
        self.scheduler.shutdown()

    # --- the worker side ------------------------------------------------------------------------
    def _run(self, batch: list[Pending], release) -> None:
        from inference.batching import Row, run_batch

        rows = []
        for pending in batch:
            row = Row(request=pending.request, handle=pending.handle)
            row.on_finish = lambda row, pending=pending: self._row_finished(row, pending, release)
            rows.append(row)
        run_batch(self.loaded, rows)

    def _row_finished(self, row: Any, pending: Pending, release) -> None:
        release(pending)
        with self._stats_lock:
            self.requests_total += 1
            final = pending.handle.final
            if final is not None and not isinstance(final, Done):
                self.errors_total += 1
            self.prompt_tokens_total += row.prompt_tokens
            self.completion_tokens_total += len(row.generated)
            self._finished.append((time.perf_counter(), len(row.generated)))


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


def load_engine_from_settings() -> Engine:
    """Load MODEL_PATH as configured, audit the outcome, and build an engine (no global state)."""
    from django.conf import settings

    from inference.loader import load_model

    try:
        loaded = load_model(
            settings.MODEL_PATH,
            quantization=settings.MODEL_QUANTIZATION,
            trust_remote_code=settings.MODEL_TRUST_REMOTE_CODE,
            pinned_manifest_sha256=settings.MODEL_MANIFEST_SHA256,
            name=settings.MODEL_NAME,
        )
    except InferenceError as exc:
        logger.error("model load refused: %s", exc)
        record_model_load_failure(str(settings.MODEL_PATH), exc)
        raise
    logger.info(
        "model %s loaded: %s on %s (%s) in %.1f s",
        loaded.name,
        loaded.quantization,
        loaded.device,
        loaded.quantization_reason,
        loaded.load_seconds,
    )
    record_model_load(loaded)
    return Engine(loaded, EngineLimits.from_settings())


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
        return True, f"{info.name} ({info.quantization} on {info.device})"
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
