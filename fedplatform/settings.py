"""Settings, all overridable from the environment (see docs/configuration.md)."""
import os
from pathlib import Path
from typing import Any

import dj_database_url

from fedplatform.channel_layers import channel_layers

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

# HTTPS, from the environment (docs/configuration.md, the README's production section). Behind a
# TLS-terminating proxy set FEDPLATFORM_PROXY_SSL_HEADER to the header it sets
# (``X-Forwarded-Proto``); Django then trusts that header's ``https``, so the proxy must
# overwrite whatever a client sent in it.
HTTPS = env_bool("FEDPLATFORM_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("FEDPLATFORM_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("FEDPLATFORM_HSTS_SECONDS", 31536000 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("FEDPLATFORM_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("FEDPLATFORM_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("FEDPLATFORM_SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
_proxy_header = os.environ.get("FEDPLATFORM_PROXY_SSL_HEADER", "").strip()
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")

# A fixed development key is only acceptable while DEBUG is on. Without DEBUG and without
# SECRET_KEY a process makes up its own (sessions die with it, and two processes do not share
# them): fine on one laptop, refused in the HTTPS configuration and by ``check --deploy``
# (fedplatform.checks).
SECRET_KEY_FROM_ENVIRONMENT = bool(os.environ.get("SECRET_KEY"))
SECRET_KEY = os.environ.get("SECRET_KEY") or ("dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    if HTTPS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set when FEDPLATFORM_HTTPS is on (DEBUG is off)")
    SECRET_KEY = "unset-" + os.urandom(16).hex()  # sessions won't survive restarts; set SECRET_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "huey.contrib.djhuey",
    "fedplatform",
    "clients",
    "rounds",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The platform is one ASGI process with no front web server by default: WhiteNoise serves the
    # dashboard's, admin's and Swagger UI's assets from it, with or without DEBUG.
    "fedplatform.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fedplatform.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "fedplatform.asgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers of one process queue in the process (fedplatform/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "fedplatform.sqlite"
    # Each thread keeps its connection: opening one (the file, the pragmas, the functions Django
    # registers) cost more than a device's poll itself, and with a maximum age of 0 Django closes
    # it at the end of every request (``request_finished``). Threads are few and long-lived (the
    # server's request pool, the engine's workers), so connections are too.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # IMMEDIATE takes the write lock at BEGIN, so two processes racing to close a round queue
    # up instead of failing with "database is locked" on lock upgrade; WAL lets readers proceed.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests get a file, not Django's shared-cache memory database: that one locks whole tables
    # between connections, and the event relay and long-polls read on threads of their own.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(__import__("tempfile").gettempdir()) / f"fedplatform-test-{os.getpid()}.sqlite3")
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A bounded pool per process: under load a request waits for a connection (latency), it
    # never opens one past PostgreSQL's limit (a 500). Size it so processes x max_size fits.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": int(os.environ.get("FEDPLATFORM_DB_POOL_SIZE", 10)),
        "timeout": float(os.environ.get("FEDPLATFORM_DB_POOL_TIMEOUT", 30)),
    }
    # Parameters bound by the server and statements prepared once per connection (psycopg does it
    # from a statement's second use): a device's requests repeat the same few statements, and
    # PostgreSQL spent half its time parsing and planning them again (2,500 devices joining: 21
    # against 11 CPU seconds). A pooler in transaction mode in front would need these off.
    _prepare = os.environ.get("FEDPLATFORM_DB_PREPARE_THRESHOLD", "2")
    if _prepare:
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(_prepare)

REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYERS = channel_layers(REDIS_URL)


def _queue_default_file() -> str:
    """The embedded queue's file: beside the SQLite database, else in the project folder."""
    name = str(DATABASES["default"].get("NAME") or "")
    if DATABASES["default"]["ENGINE"] == "fedplatform.sqlite" and name not in ("", ":memory:"):
        return f"{name}-queue"
    return str(BASE_DIR / "queue.sqlite3")


# The engine's task queue (Huey; see docs/architecture.md). Embedded: a SQLite file, no service to
# run. With REDIS_URL: Redis, shared by any number of engine workers on any machines. The queue's
# name follows the database, so deployments (and test runs) sharing one Redis stay apart.
QUEUE_NAME = os.environ.get("FEDPLATFORM_QUEUE_NAME") or "fedplatform-" + __import__("hashlib").sha256(
    str(DATABASES["default"].get("NAME")).encode() + str(DATABASES["default"].get("HOST", "")).encode()
).hexdigest()[:12]
_consumer = {
    "workers": int(os.environ.get("FEDPLATFORM_ENGINE_THREADS", 2)),
    "worker_type": "thread",
    "periodic": True,
    "scheduler_interval": 1,
    "check_worker_health": True,
    # The embedded queue is polled: keep the poll short so a due round is picked up at once.
    "initial_delay": 0.02,
    "backoff": 1.15,
    "max_delay": 0.05,
}
if REDIS_URL:
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": QUEUE_NAME,
        "url": REDIS_URL,
        "immediate": False,
        "results": False,
        "consumer": _consumer,
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": QUEUE_NAME,
        "filename": os.environ.get("FEDPLATFORM_QUEUE_FILE") or _queue_default_file(),
        "immediate": False,
        "results": False,
        "consumer": _consumer,
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only a deployment that runs collectstatic sets STATIC_ROOT; otherwise WhiteNoise serves from
# the apps' own static folders.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
MEDIA_ROOT = Path(os.environ.get("FEDPLATFORM_MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Serve straight from the apps' static folders, so no collectstatic step is needed; a deployment
# that runs collectstatic is served the same files from STATIC_ROOT.
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "dashboard:login"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clients.auth.ClientTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Views that name no permission (the API root): the operator roles, reading for viewers.
    "DEFAULT_PERMISSION_CLASSES": ["fedplatform.roles.CanOperate"],
    "EXCEPTION_HANDLER": "fedplatform.errors.exception_handler",
    # DRF's parsers, with a JSON parser that refuses what DRF's lets through as a 500.
    "DEFAULT_PARSER_CLASSES": [
        "fedplatform.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": None,
    # Throttles (fedplatform.throttling): per address for what needs no credentials (registration,
    # enrollment), per client for a device's calls, per user for operators. The defaults let
    # thousands of devices join through one address within a minute (a NAT, the load benchmark).
    "DEFAULT_THROTTLE_CLASSES": ["fedplatform.throttling.AnonymousThrottle", "fedplatform.throttling.ClientThrottle",
                                 "fedplatform.throttling.OperatorThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anonymous": os.environ.get("FEDPLATFORM_THROTTLE_ANONYMOUS", "6000/min") or None,
        "client": os.environ.get("FEDPLATFORM_THROTTLE_CLIENT", "600/min") or None,
        "operator": os.environ.get("FEDPLATFORM_THROTTLE_OPERATOR", "6000/min") or None,
    },
    # Proxies in front of the server that append to X-Forwarded-For: the throttles and bans take
    # the address that many hops back. 0 (the default) trusts no header, only the connection's
    # address, so a device cannot pick its own address by sending one.
    "NUM_PROXIES": int(os.environ.get("FEDPLATFORM_NUM_PROXIES", 0)),
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # The throttles' counters, per process (a limit holds per server process). Room for every
    # device of a large run; locmem's default of 300 entries would keep evicting them.
    "throttle": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "fedplatform-throttle",
        "OPTIONS": {"MAX_ENTRIES": 100_000, "CULL_FREQUENCY": 4},
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "fedplatform API",
    "DESCRIPTION": "Federated learning over REST: devices register, poll for tasks, download the "
    "global model and upload their updates in a compact binary codec.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"EncodingEnum": "fedcore.codec.ENCODINGS"},
}

# The platform's own knobs.
# Values of several types: readers know each key's (typing it per key would take a TypedDict for a
# settings dict that tests override whole).
FEDPLATFORM: dict[str, Any] = {
    # Largest update body accepted, bytes; an upload is also held to its model's own size
    # (rounds.device_input.upload_limit), so this only matters for models bigger than it.
    "MAX_UPLOAD_BYTES": int(os.environ.get("FEDPLATFORM_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)),
    # Largest body of any other request (registration, heartbeats, the operators' JSON, the admin).
    "MAX_REQUEST_BYTES": int(os.environ.get("FEDPLATFORM_MAX_REQUEST_BYTES", 1024 * 1024)),
    # When set, registration requires this key.
    "ENROLLMENT_KEY": os.environ.get("FEDPLATFORM_ENROLLMENT_KEY", ""),
    # When on, a new client waits (admission "pending") until an operator approves it.
    "REQUIRE_APPROVAL": env_bool("FEDPLATFORM_REQUIRE_APPROVAL", False),
    # Registrations that never asked for work this long after registering are deleted by the sweep.
    "STALE_REGISTRATION_SECONDS": float(os.environ.get("FEDPLATFORM_STALE_REGISTRATION_SECONDS", 900)),
    # Task paths offered beside the built-in and those installed packages declare (comma-separated
    # package.module:attribute); a run may name only an offered task.
    "TASKS": [t.strip() for t in os.environ.get("FEDPLATFORM_TASKS", "").split(",") if t.strip()],
    # Where the server looks for its evaluation data (empty: fedcore's default search).
    "DATA_DIR": os.environ.get("FEDPLATFORM_DATA_DIR", ""),
    # Server-side evaluation examples: a seeded sample of the test split (0: all of it).
    "EVAL_LIMIT": int(os.environ.get("FEDPLATFORM_EVAL_LIMIT", 2000)),
    # Evaluation runs beside aggregation and the devices' requests: one core, not all of them.
    "EVAL_THREADS": int(os.environ.get("FEDPLATFORM_EVAL_THREADS", 1)),
    # Seconds a device is told to wait before polling again when there is nothing to do.
    "POLL_INTERVAL": float(os.environ.get("FEDPLATFORM_POLL_INTERVAL", 1.0)),
    # Longest ``?wait=`` a task long-poll is held, seconds.
    "LONG_POLL_MAX": float(os.environ.get("FEDPLATFORM_LONG_POLL_MAX", 30)),
    # How often the engine sweeps (deadlines, silent clients, dead claims), seconds.
    "SWEEP_SECONDS": float(os.environ.get("FEDPLATFORM_SWEEP_SECONDS", 2)),
    # A closing claim not renewed for this long is presumed dead and the round is closed again.
    "CLOSE_LEASE_SECONDS": float(os.environ.get("FEDPLATFORM_CLOSE_LEASE", 30)),
    # Likewise for a version's evaluation.
    "EVAL_LEASE_SECONDS": float(os.environ.get("FEDPLATFORM_EVAL_LEASE", 600)),
    # Open rounds whose updates an engine worker folds in as they arrive (rounds.prefold), each
    # holding a float64 copy of the model; 0 folds every update at the close.
    "PREFOLD_ROUNDS": int(os.environ.get("FEDPLATFORM_PREFOLD_ROUNDS", 2)),
}
# Django's own cap on the bodies it reads itself (forms); uploads are read by their view.
DATA_UPLOAD_MAX_MEMORY_SIZE = FEDPLATFORM["MAX_REQUEST_BYTES"]
# A failed CSRF check answers in the API's JSON shape (a browser's page stays Django's).
CSRF_FAILURE_VIEW = "fedplatform.errors.csrf_failure"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "fedplatform": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        # Every 5xx with its traceback, DEBUG or not.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # The queue logs every task it runs at INFO (a sweep every few seconds): warnings by default.
        "huey": {"handlers": ["console"], "level": os.environ.get("FEDPLATFORM_QUEUE_LOG_LEVEL", "WARNING"),
                 "propagate": False},
    },
}
