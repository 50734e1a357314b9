from django.apps import AppConfig


class FedplatformConfig(AppConfig):
    name = "fedplatform"
    verbose_name = "fedplatform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import signals

        from . import checks  # noqa: F401  (registers the deployment checks)
        from django.db import close_old_connections, reset_queries

        # Under ASGI Django sends request_started through async_to_sync machinery that runs each
        # synchronous receiver in a thread of its own: a held long-poll would hold that thread for
        # its whole wait. Both receivers tidy the connections of the thread they run on, which is
        # not the one a request's work runs on (fedplatform/handlers.py releases those itself).
        signals.request_started.disconnect(reset_queries)
        signals.request_started.disconnect(close_old_connections)
