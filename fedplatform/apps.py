from django.apps import AppConfig


class FedplatformConfig(AppConfig):
    name = "fedplatform"
    verbose_name = "fedplatform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import signals
        from django.db import close_old_connections, reset_queries

        # Under ASGI Django sends request_started through async_to_sync machinery that runs each
        # synchronous receiver in a thread of the request's own, kept until the request ends: a
        # held long-poll would hold that thread for its whole wait. Both receivers tidy up the
        # connections of the thread a request runs on, and an ASGI request gets a fresh thread
        # (with no connections) for its synchronous work anyway; request_finished still closes
        # what the request opened.
        signals.request_started.disconnect(reset_queries)
        signals.request_started.disconnect(close_old_connections)
