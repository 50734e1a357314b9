from django.apps import AppConfig


class RoundsConfig(AppConfig):
    name = "rounds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fedplatform.events import set_wake_rule

        from . import receivers  # noqa: F401 - connects the engine to the clients app's signals
        from .longpoll import wakes_devices

        set_wake_rule(wakes_devices)  # which of the domain's events the parked devices hear
