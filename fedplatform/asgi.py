"""HTTP and websockets in one ASGI application (daphne's runserver, or any ASGI server)."""
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fedplatform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402

# The device long-poll (rounds.longpoll). Sessions, CSRF, messages and the other middleware are
# for browsers; a device authenticates with its token in the view. Django runs every classic
# (MiddlewareMixin) middleware of an async request in a thread of the request's own, kept until
# the request ends, so a held poll behind them would hold a thread for its whole wait.
LONG_POLL_PATH = re.compile(r"^/api/v1/clients/[^/]+/task/$")


class BareASGIHandler(ASGIHandler):
    """Django's ASGI handler without middleware."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )


long_poll_app = BareASGIHandler()


async def http_app(scope, receive, send):
    app = long_poll_app if LONG_POLL_PATH.match(scope.get("path", "")) else django_asgi_app
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
