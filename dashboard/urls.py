from django.urls import path

import fedplatform.converters  # noqa: F401  (registers <id:...>)

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("runs/<id:run_id>/", views.run_detail, name="run"),
    path("runs/<id:run_id>/snapshot.json", views.run_snapshot, name="snapshot"),
]
