"""ASGI entry point: ``juggler mysite.asgi:application`` (async views run on the event loop)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
