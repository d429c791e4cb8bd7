"""Forkview settings: everything that varies comes from the environment.

Safe defaults: DEBUG off, a SQLite file in the data directory, the in-memory channel layer,
the offline model. The README's ``make run`` turns DEBUG on for the local demo.

The data directory (``FORKVIEW_DATA_DIR``) holds the default SQLite file, the generated
secret key and the collected static files: the checkout itself when running from one (a
folder with ``manage.py`` and ``pyproject.toml``), else ``$XDG_DATA_HOME/forkview``
(``~/.local/share/forkview``), never the installed package's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ  # type: ignore[import-untyped]  # django-environ ships no type information
from django.core.management.utils import get_random_secret_key

from conversations.sqlite_pool import SQLiteConnectionPool

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _data_dir() -> Path:
    configured = env.str("FORKVIEW_DATA_DIR", default="")
    if configured:
        return Path(configured).expanduser()
    if (BASE_DIR / "manage.py").is_file() and (BASE_DIR / "pyproject.toml").is_file():
        return BASE_DIR  # a checkout: state beside the code, as `make run` has always kept it
    xdg = env.str("XDG_DATA_HOME", default="") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "forkview"


DATA_DIR = _data_dir()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# templates/ and static/: the checkout's, or their copies inside an installed wheel.
_BUNDLED = Path(__file__).resolve().parent / "bundled"
ASSETS_DIR = _BUNDLED if (_BUNDLED / "templates").is_dir() else BASE_DIR

# GENERAL
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

NO_SECRET_KEY = (
    "Forkview: DJANGO_SECRET_KEY is not set. With DJANGO_DEBUG off it must be: the same long "
    "random value on every instance (e.g. python -c 'import secrets; "
    "print(secrets.token_urlsafe(50))'), or DJANGO_SECRET_KEY_FILE naming a file that holds it."
)


def _read_key(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"Forkview: cannot read the secret key file {path}: {exc}") from exc
    if not key:
        raise SystemExit(f"Forkview: the secret key file {path} is empty; delete it or fill it.")
    return key


def _local_secret_key(path: Path) -> str:
    """A key kept in the data directory, so a local run (DEBUG) needs no configuration.

    Created once, mode 0600, complete before it appears (written to a temporary file, then
    hard-linked into place): processes starting together all read the one that won.
    """
    if path.exists():
        return _read_key(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(get_random_secret_key())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    finally:
        temporary.unlink()
    return _read_key(path)


def _secret_key() -> str:
    """``DJANGO_SECRET_KEY``; else ``DJANGO_SECRET_KEY_FILE``; else, with DEBUG only, a
    generated key file in the data directory. Production without a key stops here."""
    key = str(env.str("DJANGO_SECRET_KEY", default="")).strip()
    if key:
        return key
    configured = env.str("DJANGO_SECRET_KEY_FILE", default="")
    if configured:
        path = Path(configured).expanduser()
        return _local_secret_key(path) if DEBUG else _read_key(path)
    if DEBUG:
        return _local_secret_key(DATA_DIR / ".secret_key")
    raise SystemExit(NO_SECRET_KEY)


SECRET_KEY = _secret_key()

TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI (http + websockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # full-text search on PostgreSQL; inert on SQLite
    "channels",
    "ninja",  # the API docs page from its bundled Swagger UI files (no CDN)
    "conversations",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Static files from the ASGI app itself, so a plain `daphne dashboard.asgi:application`
    # serves them too (after collectstatic); in DEBUG straight from the app folders.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ASSETS_DIR / "templates"],
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

# DATABASES
# ------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/databases/
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'forkview.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _tune_database(alias: str, config: dict[str, Any]) -> dict[str, Any]:
    """Concurrency settings every Forkview database gets.

    SQLite: WAL (readers never block the writer, as the SDK configures it), a busy timeout,
    and IMMEDIATE transactions so a writer takes the file's write lock when its transaction
    begins; concurrent writers then wait their turn instead of failing with
    "database is locked" on a read-to-write upgrade. Tests use a file database, because
    several processes (daphne, multi-process writers) must see the same data.
    """
    if config["ENGINE"] == "django.db.backends.sqlite3":
        options = config.setdefault("OPTIONS", {})
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 30)
        # WAL as the SDK configures it; a 64 MB page cache and memory-mapped reads keep reads
        # of one session flat as the file grows (the default cache is 2 MB).
        options.setdefault(
            "init_command",
            "PRAGMA journal_mode=WAL; PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456",
        )
        # Kept connections (conversations/sqlite_pool.py): under ASGI every request has its own
        # connection storage, so CONN_MAX_AGE never reuses a connection; each request opened
        # the file anew (~0.5 ms) and lost its page cache. Django still closes the connection
        # at the end of each request (CONN_MAX_AGE 0): that gives it back to the pool.
        # At most FORKVIEW_DB_POOL_SIZE (default 8; each caches up to 64 MB of pages) are kept
        # per process; 0: a new connection per request, as before.
        idle = env.int("FORKVIEW_DB_POOL_SIZE", default=8)
        if idle > 0:
            options.setdefault("factory", SQLiteConnectionPool(max_idle=idle))
        # Beside the database file, so runs with different DATABASE_URLs never share one.
        name = Path(config["NAME"])
        config.setdefault("TEST", {}).setdefault("NAME", str(name.with_name(f"test_{name.name}")))
    else:
        # An explicit test name: ChannelsLiveServerTestCase's daphne child would otherwise
        # connect to test_test_<name> (django/channels#2176).
        config.setdefault("TEST", {}).setdefault("NAME", f"test_{config['NAME']}")
        # A connection pool per process (psycopg_pool, Django's "pool" option): under ASGI
        # every request runs its sync code on a thread of its own, so persistent connections
        # (CONN_MAX_AGE) would pile up one per thread until PostgreSQL refuses new ones (the
        # load bench hit "remaining connection slots are reserved" at 2 workers). A request
        # returns its connection at the end; DjangoSession's worker threads keep theirs.
        # FORKVIEW_DB_POOL_SIZE=0: no pool, persistent connections as DJANGO_CONN_MAX_AGE.
        pool_size = env.int("FORKVIEW_DB_POOL_SIZE", default=20)
        if pool_size > 0:
            # With CONN_HEALTH_CHECKS (below) Django has the pool test each connection it
            # hands out, so after a PostgreSQL restart dead ones are replaced, not used.
            # A request waits at most FORKVIEW_DB_POOL_TIMEOUT seconds for a connection, then
            # fails as the database being unavailable (the 503 page, dashboard/errors.py).
            # reconnect_timeout: psycopg_pool retries a failed connect with a doubling delay
            # for this long (default 5 minutes), so after a long outage the pool would come
            # back minutes late; capped, the next request starts a fresh attempt at once.
            pool = {
                "min_size": 1,
                "max_size": pool_size,
                "timeout": env.float("FORKVIEW_DB_POOL_TIMEOUT", default=5.0),
                "reconnect_timeout": 10.0,
            }
            config.setdefault("OPTIONS", {}).setdefault("pool", pool)
            config["CONN_MAX_AGE"] = 0  # the pool keeps the connections
        else:
            config.setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
        config.setdefault("CONN_HEALTH_CHECKS", True)
    return config


for _alias, _config in DATABASES.items():
    _tune_database(_alias, _config)

# CHANNELS
# ------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")


def redis_channel_layer(url: str) -> dict[str, Any]:
    """The channels_redis layer on ``url``.

    redis-py >= 6 gives every socket a 5 s read timeout, and channels_redis blocks 5 s in
    BZPOPMIN waiting for a message: an idle consumer's read then timed out and its socket
    crashed (found by bench/load_bench.py). Reads may block longer here.
    """
    host = {"address": url, "socket_timeout": 30, "socket_connect_timeout": 5}
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host]}}


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# AUTH
# ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# SECURITY
# ------------------------------------------------------------------------------
# With DEBUG off everything is secure unless switched off (each switch documented in the
# README): HTTPS only (redirect, HSTS, secure cookies), the TLS-terminating proxy's
# X-Forwarded-Proto trusted, CSRF origins = https:// + each allowed host.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=_SECURE)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes speak plain HTTP to the instance
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if _SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=_SECURE)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=_SECURE)
# "HEADER,value" (the WSGI-style name Django compares, e.g. HTTP_X_FORWARDED_PROTO,https);
# empty: trust no header (no proxy, or one that does not set it).
_PROXY_HEADER = env.str(
    "DJANGO_SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO,https" if _SECURE else ""
)
if _PROXY_HEADER:
    _name, _, _value = _PROXY_HEADER.partition(",")
    SECURE_PROXY_SSL_HEADER = (_name.strip(), _value.strip() or "https")


def _trusted_origins(hosts: list[str]) -> list[str]:
    """``https://`` + every allowed host (``.example.com`` -> ``https://*.example.com``)."""
    origins = []
    for host in hosts:
        if host == "*" or not host:
            continue
        origins.append(f"https://*{host}" if host.startswith(".") else f"https://{host}")
    return origins


# Content-Security-Policy (django-csp): scripts, styles, fonts, images and connections
# (websockets included) from this origin only; no inline script or style, no plugins, no
# framing, forms post here. The templates hold no inline script, style or handler.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

CSRF_TRUSTED_ORIGINS = env.list(
    "DJANGO_CSRF_TRUSTED_ORIGINS", default=_trusted_origins(ALLOWED_HOSTS)
)

# STATIC
# ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [ASSETS_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG
#: Set by ``forkview serve`` after it collected the static files: its workers serve hashed,
#: compressed names. Everywhere else (tests, runserver, ``make run``) the plain names.
FORKVIEW_STATIC_MANIFEST_ENV = "FORKVIEW_STATIC_MANIFEST"
FORKVIEW_STATIC_MANIFEST_STORAGE = {"BACKEND": "dashboard.staticfiles.ForkviewStaticStorage"}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": FORKVIEW_STATIC_MANIFEST_STORAGE
    if env.bool(FORKVIEW_STATIC_MANIFEST_ENV, default=False)
    else {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# LOGGING
# ------------------------------------------------------------------------------
# One handler, on stdout, and every record printed once: Django's own handlers (the "django"
# logger's DEBUG-only console, runserver's "django.server") are replaced by propagation to the
# root. FORKVIEW_LOG_FORMAT=json writes one JSON object per line (python-json-logger).
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="WARNING").upper()
LOG_FORMAT = env.str("FORKVIEW_LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    # django.request: a request failed by a database outage is one line (dashboard/errors.py).
    "filters": {"quiet_outages": {"()": "dashboard.errors.QuietOutages"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Request lines of runserver (daphne's "django.channels.server") show in DEBUG.
        "django": {"handlers": [], "level": "INFO" if DEBUG else LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django.request": {"handlers": [], "filters": ["quiet_outages"], "propagate": True},
    },
}

# FORKVIEW
# ------------------------------------------------------------------------------
FORKVIEW_AGENT = env.str("FORKVIEW_AGENT", default="dashboard.agents.demo_agent")
FORKVIEW_MODEL = env.str("FORKVIEW_MODEL", default="gpt-4.1-mini")
# Live chat: seconds a turn may take; the per-branch turn guard ("auto": Redis if REDIS_URL,
# else the database); the offline demo model's pause per streamed token.
FORKVIEW_TURN_TIMEOUT = env.float("FORKVIEW_TURN_TIMEOUT", default=120.0)
FORKVIEW_TURN_LOCK = env.str("FORKVIEW_TURN_LOCK", default="auto")
FORKVIEW_OFFLINE_TOKEN_DELAY_MS = env.float("FORKVIEW_OFFLINE_TOKEN_DELAY_MS", default=12.0)
# Traces of chat turns (docs/tracing.md): the live chat registers ForkviewTracingProcessor once
# per process (talking to OpenAI: next to the SDK's exporter; otherwise as the only processor).
FORKVIEW_TRACING = env.bool("FORKVIEW_TRACING", default=True)
# Cost (docs/costs.md): prices come from the genai-prices package's bundled table (never fetched
# at run time). FORKVIEW_PRICES (JSON) overrides or adds models:
# {"model": {"input": $/Mtok, "cached_input": $/Mtok, "output": $/Mtok}}; FORKVIEW_DEFAULT_MODEL
# prices turns recorded without traces, marked "estimated" (empty: they have no price).
FORKVIEW_PRICES = env.json("FORKVIEW_PRICES", default={})
FORKVIEW_DEFAULT_MODEL = env.str("FORKVIEW_DEFAULT_MODEL", default="")
