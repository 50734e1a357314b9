from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from rounds.enrollment import RunClientViewSet
from rounds.longpoll import long_poll
from rounds.views import (
    DeviceTaskView, HeartbeatView, RoundViewSet, RunViewSet, StrategyListView, TaskListView, UpdateUploadView,
)

from .converters import ID_REGEX


class IdRouter(DefaultRouter):
    """Every viewset's ``{pk}`` is a database id (``fedplatform.converters``): a path with
    anything else there matches nothing and is a 404, before any view or query runs."""

    def get_lookup_regex(self, viewset, lookup_prefix: str = "") -> str:
        lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
        return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{ID_REGEX})"


router = IdRouter()
# The clients' API: clients.views.ClientViewSet with registration and enrollment, which need the run.
router.register("clients", RunClientViewSet, basename="client")
router.register("runs", RunViewSet, basename="run")
router.register("rounds", RoundViewSet, basename="round")

urlpatterns = [
    path("api/v1/rounds/<id:round_id>/updates/<id:client_id>/", UpdateUploadView.as_view(), name="update-upload"),
    path("api/v1/clients/<id:pk>/task/", long_poll(DeviceTaskView), name="client-task"),
    path("api/v1/clients/<id:pk>/heartbeat/", HeartbeatView.as_view(), name="client-heartbeat"),
    path("api/v1/tasks/", TaskListView.as_view(), name="task-list"),
    path("api/v1/strategies/", StrategyListView.as_view(), name="strategy-list"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

# Django's own errors (a host missing from ALLOWED_HOSTS, no pattern matched, an unhandled
# exception) in the API's JSON shape.
handler400 = "fedplatform.errors.bad_request"
handler403 = "fedplatform.errors.permission_denied"
handler404 = "fedplatform.errors.page_not_found"
handler500 = "fedplatform.errors.server_error"
