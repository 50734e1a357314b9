"""Request rates (DRF throttles), answered with ``429 throttled`` and ``Retry-After``.

Three scopes, each applying to one kind of caller so that each limit means one thing:
``anonymous`` counts requests without credentials (registration, enrollment) per address,
``client`` a device's requests per client, ``operator`` an operator's per user. Rates are
``FEDPLATFORM_THROTTLE_*`` (docs/configuration.md); an empty one turns its scope off.
"""
import math

from django.core.cache import caches
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .identity import Device


class _Throttle(SimpleRateThrottle):
    cache = caches["throttle"]

    def get_rate(self) -> str | None:
        # Read when used, not when DRF's module was imported, so a changed setting applies.
        # (The stubs type the rates as numbers; they are "N/period" strings, or None for off.)
        rates: dict[str, str | None] = api_settings.DEFAULT_THROTTLE_RATES  # type: ignore[assignment]
        return rates.get(self.scope) if self.scope is not None else None

    def wait(self) -> float | None:
        # DRF may answer a fraction of a second; Retry-After is whole seconds, at least 1.
        wait = super().wait()
        return None if wait is None else max(1, math.ceil(wait))


class AnonymousThrottle(_Throttle):
    scope = "anonymous"

    def get_cache_key(self, request, view) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ClientThrottle(_Throttle):
    scope = "client"

    def get_cache_key(self, request, view) -> str | None:
        device = request.user
        if not isinstance(device, Device):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class OperatorThrottle(_Throttle):
    scope = "operator"

    def get_cache_key(self, request, view) -> str | None:
        user = request.user
        if not user or not user.is_authenticated or isinstance(user, Device):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}
