"""Domain errors with stable codes, and the DRF handler that renders every error the same way.

Services raise these without knowing about HTTP; each class names the status a view answers with.
Every error body is ``{"code": ..., "detail": ...}``.
"""
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class FedError(Exception):
    http_status = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, detail: str, code: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code


class Invalid(FedError):
    http_status = status.HTTP_400_BAD_REQUEST


class Forbidden(FedError):
    http_status = status.HTTP_403_FORBIDDEN
    default_code = "forbidden"


class NotFound(FedError):
    http_status = status.HTTP_404_NOT_FOUND
    default_code = "not_found"


class Conflict(FedError):
    http_status = status.HTTP_409_CONFLICT
    default_code = "conflict"


class Gone(FedError):
    http_status = status.HTTP_410_GONE
    default_code = "gone"


class TooLarge(FedError):
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _first_code(codes: Any) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict):
        return "invalid" if codes else "error"
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return "error"


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, FedError):
        return Response({"code": exc.code, "detail": exc.detail}, status=exc.http_status)
    # DRF turns Django's own 404 (an unknown id in a router's URL) and 403 into its exceptions only
    # inside its handler; convert them here, so their bodies carry a code too.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"code": "invalid", "detail": "the request is invalid", "errors": exc.detail}
    elif isinstance(exc, exceptions.APIException):
        response.data = {"code": _first_code(exc.get_codes()), "detail": str(exc.detail)}
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (``handler400``), raised before any view runs, in the same JSON shape.

    The commonest is a device that reaches the server by a name or address missing from
    ``ALLOWED_HOSTS``; it must be told which, not be shown an empty HTML page.
    """
    if isinstance(exception, DisallowedHost):
        # get_host() is what refused it: read the raw header instead.
        host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
        detail = f"this server does not answer to the host {host[:200]!r}: add it to the server's ALLOWED_HOSTS"
        return JsonResponse({"code": "disallowed_host", "detail": detail}, status=400)
    return JsonResponse({"code": "bad_request", "detail": "the request was refused as malformed"}, status=400)
