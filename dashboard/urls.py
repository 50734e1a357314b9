from django.contrib.auth import views as auth_views
from django.urls import path

import fedplatform.converters  # noqa: F401  (registers <id:...>)

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    # Viewers and operators are not staff, so the admin's login would refuse them.
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("runs/<id:run_id>/", views.run_detail, name="run"),
    path("runs/<id:run_id>/snapshot.json", views.run_snapshot, name="snapshot"),
]
