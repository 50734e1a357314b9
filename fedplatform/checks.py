"""Deployment checks of the platform's own (``manage.py check --deploy``)."""
from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def secret_key_from_environment(app_configs, **kwargs) -> list[Error]:
    if settings.DEBUG or getattr(settings, "SECRET_KEY_FROM_ENVIRONMENT", True):
        return []
    return [Error(
        "SECRET_KEY is not set: each process makes up its own, so sessions die with it and server processes "
        "do not share them.",
        hint="Set SECRET_KEY in the environment of every server process (the same value for all).",
        id="fedplatform.E001",
    )]
