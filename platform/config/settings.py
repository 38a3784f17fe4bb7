"""Settings for the platform: one module, driven by the environment.

Profiles (``PLATFORM_PROFILE``):
- ``production`` (the default, so that forgetting to choose one is safe): secrets required,
  HTTPS-only cookies, HSTS; passes ``manage.py check --deploy``.
- ``dev``: what ``make run`` uses; generates missing secrets into ``DATA_DIR``.
- ``test``: what the test suite uses; fast password hasher, generated secrets.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from accounts.directory.settings import ldap_settings_from_env
from config.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # repository root
PLATFORM_DIR = BASE_DIR / "platform"

PROFILE = env_choice("PLATFORM_PROFILE", "production", ("production", "dev", "test"))
IS_PRODUCTION = PROFILE == "production"

DATA_DIR = env_path("DATA_DIR", BASE_DIR / "var")
if not IS_PRODUCTION:
    DATA_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret(file_name: str, nbytes: int = 48) -> str:
    """A secret kept in DATA_DIR, created on first use; only outside production."""
    path = DATA_DIR / file_name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if IS_PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required in production")
    SECRET_KEY = _generated_secret("secret_key")
if IS_PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long")

DEBUG = env_bool("DEBUG", False)
if DEBUG and IS_PRODUCTION:
    raise ImproperlyConfigured("DEBUG cannot be enabled in the production profile")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if IS_PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
if IS_PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in production (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # ASGI runserver with websocket support; must precede staticfiles
    "accounts.admin_config.PlatformAdminConfig",  # Django's admin with the role-checked console site
    "config",  # no models; its command `manage.py serve` runs the ASGI server
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "departments",
    "assets",
    "compliance",
    "inference",
]
if PROFILE == "test":
    # A department-scoped model that exists only to test the tenancy manager in isolation.
    INSTALLED_APPS.append("tests.tenancyprobe")

MIDDLEWARE = [
    "config.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "compliance.middleware.RequestContextMiddleware",
    "accounts.middleware.AdminNetworkMiddleware",  # /admin/ answers 404 outside ADMIN_ALLOWED_NETWORKS
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.SessionTimeoutMiddleware",  # idle and absolute session timeouts
    "compliance.middleware.RequestUserContextMiddleware",
    "accounts.middleware.RefusalRecordMiddleware",  # a view's own PermissionDenied is recorded too
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "departments.middleware.DepartmentScopeMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_secret("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")  # may hold a password: _FILE allowed
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so two writers queue instead
    # of failing with "database is locked" when the second one tries to upgrade its lock.
    _database.setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 30})
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 20, minimum=0, maximum=1000)
if _database["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX_SIZE and not _database["CONN_MAX_AGE"]:
    # A connection pool (psycopg_pool): under ASGI every request and websocket message would
    # otherwise open a new connection, tens of milliseconds before a chat's first token.
    _database.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": 30}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ---------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Authentication -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "departments:picker"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = ["accounts.directory.backends.LocalAccountBackend"]  # + the directory, below

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if PROFILE == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "accounts.passwords.CharacterClassValidator", "OPTIONS": {"min_classes": 3}},
]

# At least a minute (MLPS bounds, as the console's policy); the test profile goes lower so that a
# browser test can watch an idle session end without waiting a minute per step.
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 1800, minimum=5 if PROFILE == "test" else 60, maximum=1800)
SESSION_COOKIE_AGE = env_int("SESSION_ABSOLUTE_SECONDS", 8 * 3600, minimum=300)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# --- Identity and access (see docs/identity.md) --------------------------------------
# Defaults; the security administrator may tighten them in the console (accounts.SecurityPolicy),
# whose database constraints keep the same MLPS bounds.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5, minimum=1, maximum=5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 1800, minimum=1800)
PASSWORD_MAX_AGE_DAYS = env_int("PASSWORD_MAX_AGE_DAYS", 90, minimum=1, maximum=90)
# Every refused sign-in takes at least this long, so timing does not tell which check failed.
LOGIN_FAILURE_MIN_SECONDS = env_int("LOGIN_FAILURE_MIN_MS", 50 if PROFILE == "test" else 400, minimum=0) / 1000
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Multimodal AI platform")
OTP_TOTP_THROTTLE_FACTOR = 0  # failures are counted by the platform's own lockout instead
OTP_STATIC_THROTTLE_FACTOR = 0
_directory = ldap_settings_from_env(is_production=IS_PRODUCTION)  # LDAP_* variables; off without LDAP_SERVER_URI
LDAP_ENABLED = _directory.pop("LDAP_ENABLED")
LDAP_GROUP_MAPPINGS = _directory.pop("LDAP_GROUP_MAPPINGS")
globals().update(_directory)  # the AUTH_LDAP_* settings of django-auth-ldap
if LDAP_ENABLED:
    AUTHENTICATION_BACKENDS = ["accounts.directory.backends.DirectoryBackend", *AUTHENTICATION_BACKENDS]
# --- end of identity and access ----------------------------------------------------------------

# Administration (the Django admin, the auditor console) only from these networks.
ADMIN_ALLOWED_NETWORKS = env_networks(
    # Loopback only until the operator names the administrators' own subnet (IP-1): the whole
    # intranet is not an administration network.
    "ADMIN_ALLOWED_NETWORKS",
    ["127.0.0.0/8", "::1/128"],
)
# Proxies whose X-Forwarded-For and X-Request-ID are believed: nginx in deploy/. None by default,
# so that no client chooses its own address (make run trusts nobody). The only such trust in the
# process: `manage.py serve` runs uvicorn believing no forwarded header itself, and a system check
# refuses an ADMIN_ALLOWED_NETWORKS that contains a trusted proxy's address (accounts.E002).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", [])

# /metrics: from the admin networks, or anywhere with this bearer token (for a scraper).
METRICS_TOKEN = env_secret("METRICS_TOKEN")

# --- HTTPS and browser hardening --------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes and scrapers talk to each process directly over loopback, not through nginx.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Intranet host names cannot be on the browsers' public preload list; asking for it
        # would only matter for a public domain, where SECURE_HSTS_PRELOAD=true turns it on.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
CSRF_COOKIE_HTTPONLY = True

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
# Outside production the files are served straight from the source folders.
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = not IS_PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Uploads ----------------------------------------------------------------------------------
MAX_UPLOAD_MB = env_int("MAX_UPLOAD_MB", 100, minimum=1, maximum=10240)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Assets (encrypted uploads; see docs/assets.md) -------------------------------------
# Encrypted blobs live here; nothing in this directory is ever plaintext.
ASSET_STORAGE_DIR = env_path("ASSET_STORAGE_DIR", DATA_DIR / "assets")
# The master key ring (key id + key per line, the first one active) that wraps every file's data
# key. Outside production it is generated on first use; production refuses to start without it.
ASSET_MASTER_KEY_FILE = env_path("ASSET_MASTER_KEY_FILE", DATA_DIR / "asset_master_keys")
if IS_PRODUCTION and not env_str("ASSET_MASTER_KEY_FILE"):
    raise ImproperlyConfigured(
        "ASSET_MASTER_KEY_FILE is required in production (create one with: manage.py assets_rotate_master_key --init)"
    )
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=1, maximum=1_000_000_000)
MAX_PDF_PAGES = env_int("MAX_PDF_PAGES", 200, minimum=1, maximum=100_000)
# What one model request (chat turn, /v1 call, extraction) may decode, all its images together,
# counted from headers and stored sizes before any pixel is decoded (inference/image_budget.py).
MAX_REQUEST_PIXELS = env_int("MAX_REQUEST_PIXELS", 200_000_000, minimum=1, maximum=10_000_000_000)
# Images decoded at once in this process (uploads, thumbnails, model inputs); a decode waits at
# most IMAGE_DECODE_WAIT_SECONDS for its turn, then the request is answered "busy".
IMAGE_DECODE_CONCURRENCY = env_int("IMAGE_DECODE_CONCURRENCY", min(4, os.cpu_count() or 1), minimum=1, maximum=256)
IMAGE_DECODE_WAIT_SECONDS = env_int("IMAGE_DECODE_WAIT_SECONDS", 30, minimum=1, maximum=600)
DEPARTMENT_QUOTA_MB = env_int("DEPARTMENT_QUOTA_MB", 0, minimum=0)  # 0 = no quota
# The text layer of every page (assets/documents/; docs/assets.md "Text layer"): worker threads
# per process (0: none, the layer waits; the test profile's default), and the limits past which
# a document's text layer ends "failed" with its reason.
TEXT_LAYER_WORKERS = env_int("TEXT_LAYER_WORKERS", 0 if PROFILE == "test" else 1, minimum=0, maximum=16)
TEXT_LAYER_MAX_PAGES = env_int("TEXT_LAYER_MAX_PAGES", 200, minimum=1, maximum=100_000)
TEXT_LAYER_MAX_PAGE_PIXELS = env_int("TEXT_LAYER_MAX_PAGE_PIXELS", 4_000_000, minimum=1, maximum=100_000_000)
OCR_PAGE_SECONDS = env_int("OCR_PAGE_SECONDS", 60, minimum=1, maximum=3600)
OCR_DOCUMENT_SECONDS = env_int("OCR_DOCUMENT_SECONDS", 1800, minimum=1, maximum=86_400)
# --- end of assets ------------------------------------------------------------------------------

# --- Model ------------------------------------------------------------------------------------
MODEL_PATH = env_path("MODEL_PATH", DATA_DIR / "demo-model")
MODEL_QUANTIZATION = env_choice("MODEL_QUANTIZATION", "auto", ("auto", "nf4", "int8", "bf16", "fp16", "fp32"))
# --- Inference engine (inference/; see docs/inference.md) -------------------------------------
# No hub, ever: the same switches inference/offline.py sets, here too so that whichever module
# imports transformers first, it starts offline.
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
# A model's own code (MODEL_TRUST_REMOTE_CODE) is copied by transformers into a modules cache
# before it runs; by default that is under the home directory, which the systemd units make
# read-only. Under DATA_DIR instead, unless the operator chose HF_HOME or HF_MODULES_CACHE.
if not (os.environ.get("HF_MODULES_CACHE") or os.environ.get("HF_HOME")):
    os.environ["HF_MODULES_CACHE"] = str(DATA_DIR / "hf-modules")
MODEL_NAME = env_str("MODEL_NAME", "")  # shown in UIs and /v1/models; default: the directory name
MODEL_TRUST_REMOTE_CODE = env_bool("MODEL_TRUST_REMOTE_CODE", False)
# How many approved model versions one process loads at once: the active one plus those the system
# administrator marked "load beside it" (docs/inference.md, "Several models at once"); 1 = the
# active version alone, as before.
MODEL_MAX_LOADED = env_int("MODEL_MAX_LOADED", 1, minimum=1, maximum=8)
MODEL_MANIFEST_SHA256 = (env_str("MODEL_MANIFEST_SHA256", "") or "").lower()
if MODEL_TRUST_REMOTE_CODE and len(MODEL_MANIFEST_SHA256) != 64:
    raise ImproperlyConfigured("MODEL_TRUST_REMOTE_CODE=true requires MODEL_MANIFEST_SHA256 (64 hex digits)")
MAX_CONCURRENT_GENERATIONS = env_int("MAX_CONCURRENT_GENERATIONS", 8, minimum=1, maximum=256)
MAX_BATCH_SIZE = env_int("MAX_BATCH_SIZE", 8, minimum=1, maximum=256)
MAX_QUEUE = env_int("MAX_QUEUE", 32, minimum=0, maximum=10000)
MAX_NEW_TOKENS_CAP = env_int("MAX_NEW_TOKENS_CAP", 2048, minimum=1, maximum=131072)
DEFAULT_MAX_NEW_TOKENS = env_int("DEFAULT_MAX_NEW_TOKENS", 512, minimum=1, maximum=131072)
GENERATION_TIMEOUT_SECONDS = env_int("GENERATION_TIMEOUT_SECONDS", 300, minimum=1, maximum=3600)
# On SIGTERM (manage.py serve): how long running answers get to finish before they are ended with
# an error; the process exits within this plus about 10 s (docs/operations.md, "Stopping").
SHUTDOWN_GRACE_SECONDS = env_int("SHUTDOWN_GRACE_SECONDS", 20, minimum=0, maximum=3600)
BATCH_WINDOW_MS = env_int("BATCH_WINDOW_MS", 15, minimum=0, maximum=1000)
INFERENCE_WORKERS = env_int("INFERENCE_WORKERS", 1, minimum=1, maximum=16)
# /readyz includes "model" (and its first poll starts the load); off in the test profile, whose
# tests load their own small models.
MODEL_READINESS_CHECK = env_bool("MODEL_READINESS_CHECK", PROFILE != "test")
# Start loading the model in the background as soon as the ASGI server starts, so the first chat
# does not wait for it (off in tests, which load their own small models).
MODEL_LOAD_AT_STARTUP = env_bool("MODEL_LOAD_AT_STARTUP", PROFILE != "test")

# --- Portal chat (see docs/chat.md) ---------------------------------------------------
# Turns a user may start per minute, over all departments and all server processes (counted in
# the database, so several workers share one budget).
CHAT_TURNS_PER_MINUTE = env_int("CHAT_TURNS_PER_MINUTE", 20, minimum=1, maximum=10000)
# Earlier turns sent back to the model with each new one (the conversation's memory).
CHAT_HISTORY_TURNS = env_int("CHAT_HISTORY_TURNS", 10, minimum=0, maximum=100)
# --- end of portal chat ------------------------------------------------------------------------

# --- Audit ------------------------------------------------------------------------------------
AUDIT_RETENTION_FLOOR_DAYS = 180  # Cybersecurity Law art. 21: six months, never configurable lower
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365)
if AUDIT_RETENTION_DAYS < AUDIT_RETENTION_FLOOR_DAYS:
    raise ImproperlyConfigured(
        f"AUDIT_RETENTION_DAYS={AUDIT_RETENTION_DAYS} is below the legal floor of {AUDIT_RETENTION_FLOOR_DAYS} days"
    )
# Checkpoints are signed with an Ed25519 key that never enters the database (docs/audit.md).
# Outside production it is generated on first use; in production it must be provided.
AUDIT_SIGNING_KEY_FILE = env_path("AUDIT_SIGNING_KEY_FILE", DATA_DIR / "audit" / "signing_key.pem")
if IS_PRODUCTION and not env_str("AUDIT_SIGNING_KEY_FILE"):
    raise ImproperlyConfigured("AUDIT_SIGNING_KEY_FILE (an Ed25519 private key, PEM) is required in production")
if IS_PRODUCTION and not AUDIT_SIGNING_KEY_FILE.is_file():
    raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY_FILE={str(AUDIT_SIGNING_KEY_FILE)!r} does not exist")
AUDIT_CHECKPOINT_LOG = env_path("AUDIT_CHECKPOINT_LOG", DATA_DIR / "audit" / "checkpoints.jsonl")
AUDIT_EXPORT_DIR = env_path("AUDIT_EXPORT_DIR", DATA_DIR / "audit" / "exports")
# Optional SIEM forwarding: tcp://host:port, tls://host:port, udp://host:port or a unix socket
# path (/dev/log). Only TCP and TLS tell that the target took an entry (AU-5 in the report).
AUDIT_SYSLOG_ADDRESS = env_str("AUDIT_SYSLOG_ADDRESS", "")
# The report's AU-5 passes when the target accepted an entry within this many hours.
AUDIT_FORWARD_MAX_AGE_HOURS = env_int("AUDIT_FORWARD_MAX_AGE_HOURS", 24, minimum=1, maximum=24 * 31)

# --- Compliance report (see docs/compliance-report.md) -----------------------------------------
# The address people use (https://ai.example.internal/): the report probes it live over TLS
# (IA-3, DC-1), verifying its certificate against TLS_CA_BUNDLE (a PEM file of the CA(s) that
# issued it; empty: the system's trust store).
PUBLIC_URL = env_str("PUBLIC_URL", "")
TLS_CA_BUNDLE = env_str("TLS_CA_BUNDLE", "")
# How many app processes (uvicorn/daphne serving this installation, all hosts) the deployment
# runs; more than one needs the Redis channel layer (production refuses the in-memory one), and
# the report compares it with the processes that report a heartbeat (BR-3).
APP_PROCESSES = env_int("APP_PROCESSES", 1, minimum=1, maximum=1000)
HEARTBEAT_SECONDS = env_int("HEARTBEAT_SECONDS", 30, minimum=1 if PROFILE == "test" else 5, maximum=600)
# The result of scripts/dependency_audit.py (IP-3), under DATA_DIR so that it exists in the image.
DEPENDENCY_AUDIT_RESULT = env_path("DEPENDENCY_AUDIT_RESULT", DATA_DIR / "dependency-audit.json")

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Strict JSON (no deep nesting, no lone surrogates) with a body limit: config/strict_json.py.
    "DEFAULT_PARSER_CLASSES": [
        "config.strict_json.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Multimodal AI platform API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,  # separate request/response components (multipart uploads)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- API keys, OpenAI-compatible API, extraction (see docs/api.md) --------------------
API_KEY_RATE_PER_MINUTE = env_int("API_KEY_RATE_PER_MINUTE", 600, minimum=1, maximum=1_000_000)
API_KEY_DEFAULT_DAYS = env_int("API_KEY_DEFAULT_DAYS", 90, minimum=1, maximum=3650)
# Inline (data: URL) images in chat requests: at most this many MiB each, decoded.
API_INLINE_IMAGE_MB = env_int("API_INLINE_IMAGE_MB", 20, minimum=1, maximum=1024)
# The largest JSON body of a REST call (inline images included); a declared Content-Length over
# it is refused before the body is read (config/request_body.py, config/strict_json.py).
API_MAX_BODY_MB = env_int("API_MAX_BODY_MB", 64, minimum=1, maximum=4096)
# response_format / extraction: how many times the model may answer before we give up.
STRUCTURED_OUTPUT_ATTEMPTS = env_int("STRUCTURED_OUTPUT_ATTEMPTS", 3, minimum=1, maximum=10)
EXTRACTION_MAX_NEW_TOKENS = env_int("EXTRACTION_MAX_NEW_TOKENS", 512, minimum=16, maximum=131072)
# The per-key rate counters live in the cache: Redis when REDIS_URL is set (shared by every
# process), else this process's memory.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# --- end of API ---------------------------------------------------------------------------------

# --- Logging ----------------------------------------------------------------------------------
LOG_FORMAT = env_choice("LOG_FORMAT", "json" if IS_PRODUCTION else "text", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "config.logging_json.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # An ordinary refusal (403/404) logs one line, without a traceback (config/logging_refusals.py).
    "filters": {"refusals": {"()": "config.logging_refusals.RefusalTracebackFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": sys.stderr, "formatter": LOG_FORMAT}},
    "loggers": {"django.request": {"filters": ["refusals"]}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))},
}

# --- Production refusals (config/production.py) -------------------------------------------------
if IS_PRODUCTION:
    from config.production import production_refusals

    production_refusals(
        database_engine=DATABASES["default"]["ENGINE"],
        channel_layer_backend=CHANNEL_LAYERS["default"]["BACKEND"],
        app_processes=APP_PROCESSES,
    )
