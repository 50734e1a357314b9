from django.urls import path

from .consumers import DashboardConsumer

# Channels routes ASGI consumers with Django's path(), whose stub accepts views only.
websocket_urlpatterns = [path("ws/dashboard/", DashboardConsumer.as_asgi())]  # type: ignore[arg-type]
