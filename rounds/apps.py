from django.apps import AppConfig


class RoundsConfig(AppConfig):
    name = "rounds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the engine to the clients app's signals
