"""The engine's exceptions and their messages (module constants, so tests and callers import them).

Callers map them to their protocol: ``InvalidRequest`` → HTTP 400 / a websocket error frame,
``EngineBusy`` → HTTP 429 with ``Retry-After: <retry_after>``, ``ModelUnavailable`` → 503.
"""

from __future__ import annotations

# Parameters
TEMPERATURE_INVALID = "temperature must be a number between 0 and 2 (0 means greedy decoding)"
TOP_P_INVALID = "top_p must be a number greater than 0 and at most 1"
MAX_NEW_TOKENS_INVALID = "max_new_tokens must be a whole number of at least 1"
MAX_NEW_TOKENS_OVER_CAP = "max_new_tokens={value} is above this server's limit of {cap}"
MIN_NEW_TOKENS_INVALID = "min_new_tokens must be a whole number between 0 and max_new_tokens"
STOP_INVALID = "stop must be a list of at most {limit} non-empty strings of at most {length} characters"
SEED_INVALID = "seed must be a whole number between 0 and 2**63 - 1"
# Messages
MESSAGES_EMPTY = "a request needs at least one message"
MESSAGES_LAST_NOT_USER = "the last message must come from the user"
ROLE_INVALID = "message role must be one of: system, user, assistant (got {role!r})"
SYSTEM_NOT_FIRST = "a system message may only come first"
MESSAGE_EMPTY = "every message needs text or at least one image"
IMAGE_INVALID = "images must be PIL images (decode files and data: URLs before submitting)"
IMAGE_IN_NON_USER = "only user messages may carry images"
TOO_MANY_IMAGES = "a request may carry at most {limit} images"
PROMPT_TOO_LONG = "the prompt is {tokens} tokens long; this model accepts at most {limit}"
# Scheduling and generation
ENGINE_BUSY = "the model is busy ({queued} requests waiting); retry after {retry_after} s"
GENERATION_TIMEOUT = "generation took longer than the limit of {seconds:g} s and was stopped"
GENERATION_FAILED = "generation failed ({error}); the model is still serving other requests"
OUT_OF_MEMORY = "the model ran out of memory for this request; try a shorter prompt, fewer images or fewer tokens"
ENGINE_STOPPED = "the inference engine has been shut down"
SCHEDULING_ONE_AT_A_TIME = (
    "{family} runs its own model code, which the engine cannot batch per decoding step: "
    "requests are served one at a time"
)
# Loading
MODEL_DIR_MISSING = "MODEL_PATH {path} is not a directory (run `manage.py make_demo_model` for a demo model)"
MODEL_LOAD_FAILED = "the model in {path} could not be loaded: {error}"
MODEL_LOADING = "the model is still loading"
REMOTE_CODE_REFUSED = (
    "the model in {path} needs trust_remote_code; set MODEL_TRUST_REMOTE_CODE=true and pin its manifest "
    "with MODEL_MANIFEST_SHA256 to allow it"
)
REMOTE_CODE_UNPINNED = (
    "MODEL_TRUST_REMOTE_CODE=true requires MODEL_MANIFEST_SHA256 to pin the reviewed model files "
    "(the manifest's SHA-256 is {actual})"
)
MANIFEST_PIN_MISMATCH = "the model's manifest SHA-256 is {actual}, but MODEL_MANIFEST_SHA256 pins {expected}"
FAMILY_UNSUPPORTED = (
    "model_type {model_type!r} is not a supported model family (supported: {supported}); "
    "see docs/inference.md, 'Model families'"
)
FAMILY_NOT_VISION = (
    "model_type {model_type!r} without a vision_config is a text-only model; this platform runs vision models"
)
FAMILY_REMOTE_CLASS_MISSING = "the model's config.json auto_map has no {auto_class} entry, which loads this family"
MODEL_IMAGES_OVER_LIMIT = "this model ({family}) reads at most {limit} image(s) per conversation"
QUANTIZATION_NEEDS_CUDA = "MODEL_QUANTIZATION={quantization} needs a CUDA GPU for bitsandbytes on this build: {error}"
# Integrity
MANIFEST_MISSING = "the model has no manifest {path}; review the files, then run `manage.py model_manifest --write`"
MANIFEST_MALFORMED = "the model manifest is malformed at line {line} (expected `<sha256>  <relative path>`)"
MANIFEST_MISMATCH = "model file {name} does not match its SHA-256 in the manifest: refusing to load"
MANIFEST_MISSING_FILE = "model file {name} is listed in the manifest but missing: refusing to load"
MANIFEST_EXTRA_FILE = "model file {name} is not listed in the manifest: refusing to load"


class InferenceError(Exception):
    """Base of every error the engine reports to a caller; ``str()`` is safe to show users."""

    code = "inference_error"


class InvalidRequest(InferenceError, ValueError):
    code = "invalid_request"


class EngineBusy(InferenceError):
    code = "busy"

    def __init__(self, *, queued: int, retry_after: int) -> None:
        self.queued = queued
        self.retry_after = retry_after
        super().__init__(ENGINE_BUSY.format(queued=queued, retry_after=retry_after))


class ModelUnavailable(InferenceError):
    code = "model_unavailable"


class ModelLoadError(ModelUnavailable):
    code = "model_load_failed"


class ManifestError(ModelLoadError):
    code = "manifest_mismatch"


class GenerationFailed(InferenceError):
    """A request that ended with an Error event, raised by ``GenerationHandle.result()``."""

    def __init__(self, message: str, code: str) -> None:
        self.code = code
        super().__init__(message)
