"""Settings of the example Django project served by juggler (over WSGI and over ASGI)."""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

# An example only: a real project reads its secret from the environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = ["notes"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
ASGI_APPLICATION = "mysite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
    }
]


def database_from_env() -> dict:
    """PostgreSQL (psycopg 3, with Django's connection pool) when DATABASE_URL is set, as
    ``eval "$(scripts/postgres.sh)"`` does; otherwise SQLite, which the older tests use."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            # The tests point this at a temporary copy.
            "NAME": os.environ.get("NOTES_DB", str(BASE_DIR / "db.sqlite3")),
        }
    u = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path.lstrip("/"),
        "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "",
        "PORT": str(u.port or ""),
        # One pool per worker process, shared by its threads (WSGI) or by the threads that
        # run the async ORM's queries (ASGI); CONN_MAX_AGE must stay 0 with a pool.
        "OPTIONS": {"pool": {"min_size": 2, "max_size": int(os.environ.get("PG_POOL_SIZE", "32"))}},
    }


DATABASES = {"default": database_from_env()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
