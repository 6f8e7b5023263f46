"""Django's WSGI and ASGI handlers, with minimal settings, for the --interface tests.

Importing this configures Django's settings for the whole process: import it only in a
subprocess (juggler itself, or ``python -c``), never in the pytest process.
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="juggler-iface-tests",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
)
urlpatterns: list = []

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

wsgi_app = get_wsgi_application()
asgi_app = get_asgi_application()
