"""Django settings: the one base module. Everything variable comes from the environment.

Values are read and validated by :mod:`glisk.config`; this module only maps them onto Django's
names. With ``DATABASE_URL`` unset, the project's embedded PostgreSQL is started (or joined).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

from glisk.config import database_config, development_secret_key, load_config
from glisk.env import read_env_file
from glisk.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GLISK_VAR_DIR", BASE_DIR / "var"))
DEVNET_ENV_FILE = VAR_DIR / "devnet.env"

# A developer's .env fills what the process environment leaves unset (never overrides it).
# (A container has none: its settings come from the environment, and it says nothing about it.)
if os.environ.get("APP_ENV") != "test" and (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The devnet's settings (written by `manage.py devnet`) apply to development only: production
# must name its own, and tests configure the chain they start.
_devnet = read_env_file(DEVNET_ENV_FILE) if os.environ.get("APP_ENV", "development") == "development" else {}
GLISK = load_config(os.environ, devnet=_devnet)
GLISK_SECRET_VALUES = GLISK.secret_values()

APP_ENV = GLISK.app_env
DEBUG = GLISK.debug
# Empty outside production (as `cp .env.example .env` leaves it): a key made once under var/.
SECRET_KEY = GLISK.secret_key or development_secret_key(VAR_DIR)
ALLOWED_HOSTS = GLISK.allowed_hosts
CSRF_TRUSTED_ORIGINS = GLISK.csrf_trusted_origins
CORS_ALLOWED_ORIGINS = GLISK.cors_origins

INSTALLED_APPS = [
    "glisk.apps.GliskAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Our apps come before django_q so that core's `qcluster` command wraps django-q2's.
    "glisk.core",
    "authors",
    "chain",
    "lifecycle",
    "django_q",
]
# The development harness (devnet, relay, demo, serve) is no part of a production deployment.
if APP_ENV != "production" or GLISK.network == "DEVNET":
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_q"), "glisk.devtools")

MIDDLEWARE = [
    "glisk.health.HealthCheckMiddleware",  # first: health checks ask by address, not host name
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The admin's messages live in the session. The default (a signed cookie, falling back to the
# session) builds a cookie signer for every request, the API's too: 5 % of a token list's CPU.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

ROOT_URLCONF = "glisk.urls"
WSGI_APPLICATION = "glisk.wsgi.application"
ASGI_APPLICATION = "glisk.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

if GLISK.database_url:
    _database_url = GLISK.database_url
else:
    from glisk.embedded_db import database_url

    _database_url = database_url(VAR_DIR)

DATABASES = {"default": database_config(_database_url)}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = GLISK.conn_max_age
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DATABASES["default"]["TEST"] = {"NAME": "test_glisk"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache every process shares (the API's throttle counts): Django's database cache, whose
# table a migration creates.
# Django counts the table on every write and culls past MAX_ENTRIES: expired keys first, then a
# third of the rest (which would reset some throttle counts). The throttles keep one key per
# client and scope for an hour, so 50,000 holds an hour of that many clients, and keeps the count
# cheap: with millions of expired rows it cost three times as much per request.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "glisk_cache",
        "OPTIONS": {"MAX_ENTRIES": 50_000},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if APP_ENV == "test":
    # Speed knob only: hashing strength is irrelevant to what the tests check.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
# Times to the second everywhere in the back office (stages take seconds): glisk/formats/en.
FORMAT_MODULE_PATH = ["glisk.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
_FILE_STORAGE_BACKENDS = {
    "database": {"BACKEND": "glisk.core.storage.DatabaseStorage"},
    "filesystem": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "s3": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": GLISK.s3_bucket,
            "endpoint_url": GLISK.s3_endpoint_url or None,
            "region_name": GLISK.s3_region or None,
            "access_key": GLISK.s3_access_key_id or None,
            "secret_key": GLISK.s3_secret_access_key or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    },
}
STORAGES = {
    # Generated images: every worker, on any machine, must read what another stored.
    "default": _FILE_STORAGE_BACKENDS[GLISK.file_storage],
    # Production serves hashed, compressed copies listed in a manifest. An image build collects
    # them with throwaway development settings, so it asks for the manifest explicitly.
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if APP_ENV == "production" or os.environ.get("STATIC_MANIFEST") == "1"
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = APP_ENV != "production"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start without it
IPFS_LOCAL_DIR = VAR_DIR / "ipfs"

if APP_ENV == "production":
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = GLISK.secure_ssl_redirect
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = GLISK.secure_hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = GLISK.secure_hsts_seconds > 0
    SECURE_HSTS_PRELOAD = GLISK.secure_hsts_seconds > 0
    SECURE_CONTENT_TYPE_NOSNIFF = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "glisk.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Prompt updates, per wallet and per client address (glisk.public_api.throttles).
    "DEFAULT_THROTTLE_RATES": {
        "prompt_wallet": "10/hour",
        "prompt_client": "30/hour",
        "social_client": "30/hour",
        "webhook_rejected": "60/minute",  # deliveries whose signature fails (chain.views)
    },
    "NUM_PROXIES": GLISK.num_proxies,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GLISK backend API",
    "DESCRIPTION": "Read API for GLISK tokens and authors, and the Alchemy webhook endpoint.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc are served from our static files (drf-spectacular-sidecar), no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# A block's worth of mint logs (a few KiB per mint) fits easily; larger bodies are refused with
# 413 before they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# django-q2: the ORM broker on our PostgreSQL. `retry` must exceed `timeout`, or a task still
# running is handed to a second worker; stage tasks are idempotent, so at-least-once is safe.
Q_CLUSTER = {
    "name": "glisk",
    "orm": "default",
    "workers": GLISK.qcluster_workers,
    # Stage tasks stop claiming after 2 min (an image task and the IPFS work it carries on with
    # share those), plus the batch in hand; the watcher ~5 min; a task still running at `timeout` is
    # killed, and one whose worker died comes back after `retry`.
    "timeout": 600,
    "retry": 660,
    "max_attempts": 3,
    "ack_failures": True,
    "save_limit": 1000,
    "queue_limit": 50,
    "poll": 0.2,
    # The ORM broker, plus LISTEN/NOTIFY: an idle cluster picks a queued task up at once, and
    # polls only as a fallback (glisk/core/broker.py).
    "broker_class": "glisk.core.broker.NotifyingORM",
    "catch_up": False,
    "label": "Task queue",
}

LOGGING = logging_config(level=GLISK.log_level, json_output=APP_ENV == "production")
