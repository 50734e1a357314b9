"""HTTP and websockets in one ASGI application (daphne's runserver, or any ASGI server)."""
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fedplatform.settings")
get_asgi_application()  # sets Django up; the HTTP handlers below replace the one it returns

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from fedplatform.handlers import BareASGIHandler, PooledASGIHandler  # noqa: E402
from fedplatform.runtime import tune_server  # noqa: E402
from rounds.runtask import preload as preload_tasks  # noqa: E402

# The device long-poll (rounds.longpoll) is an async view that parks; everything else is
# synchronous Django, run one request per call on the shared thread pool.
LONG_POLL_PATH = re.compile(r"^/api/v1/clients/[^/]+/task/$")

long_poll_app = BareASGIHandler()
django_app = PooledASGIHandler()


async def http_app(scope, receive, send):
    app = long_poll_app if LONG_POLL_PATH.match(scope.get("path", "")) else django_app
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        # The routes are Django paths to consumers (dashboard.routing), which the stubs tell apart.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
        ),
    }
)
preload_tasks()  # the tasks' code (PyTorch with it) belongs to start-up, not to a first request
tune_server()  # last: the switch interval, and what start-up built kept out of the collector's way
