from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from clients.views import ClientViewSet
from rounds.longpoll import long_poll
from rounds.views import DeviceTaskView, HeartbeatView, RoundViewSet, RunViewSet, TaskListView, UpdateUploadView

# Errors raised before a view (a host missing from ALLOWED_HOSTS, say) answer JSON like the API.
handler400 = "fedplatform.errors.bad_request"

router = DefaultRouter()
router.register("clients", ClientViewSet, basename="client")
router.register("runs", RunViewSet, basename="run")
router.register("rounds", RoundViewSet, basename="round")

urlpatterns = [
    path("api/v1/rounds/<int:round_id>/updates/<int:client_id>/", UpdateUploadView.as_view(), name="update-upload"),
    path("api/v1/clients/<int:pk>/task/", long_poll(DeviceTaskView), name="client-task"),
    path("api/v1/clients/<int:pk>/heartbeat/", HeartbeatView.as_view(), name="client-heartbeat"),
    path("api/v1/tasks/", TaskListView.as_view(), name="task-list"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]
