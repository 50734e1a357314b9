"""Domain errors with stable codes, and the handlers that render every error the same way.

Services raise these without knowing about HTTP; each class names the status a view answers with.
Every error body is ``{"code": ..., "detail": ...}``: DRF's errors through ``exception_handler``,
Django's own 400/403/404/500 (a URL no pattern matches, an unhandled exception) through the
``handler*`` views below, which ``fedplatform/urls.py`` installs. Django logs every 5xx with its
traceback (logger ``django.request``, configured in settings whatever DEBUG says).
"""
from typing import Any

from django.core.exceptions import BadRequest, DisallowedHost, PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure
from rest_framework import exceptions, status
from rest_framework.response import Response


class FedError(Exception):
    http_status: int = status.HTTP_400_BAD_REQUEST
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
    # DRF turns these into its own exceptions inside its handler; turned here first, they get a
    # code like every other APIException (a bare Http404 answered {"detail": "Not found."}).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, RequestDataTooBig):
        return Response({"code": "too_large", "detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    # Late: DRF's views import this module while they load (through fedplatform.parsers).
    from rest_framework.views import exception_handler as drf_exception_handler  # noqa: PLC0415

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"code": "invalid", "detail": "the request is invalid", "errors": exc.detail}
    elif isinstance(exc, exceptions.APIException):
        response.data = {"code": _first_code(exc.get_codes()), "detail": str(exc.detail)}
    return response


# ---------------------------------------------------------------- Django's own error views


def error_response(status_code: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status_code)


def _wants_page(request: HttpRequest) -> bool:
    """A browser asking for a page (the dashboard, the admin) gets Django's HTML error page;
    the API, and anything that does not ask for HTML, gets the JSON shape."""
    path = getattr(request, "path", "") or ""
    return not path.startswith("/api/") and "text/html" in request.headers.get("Accept", "")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400s, raised before any view runs.

    The commonest is a device that reaches the server by a name or address missing from
    ``ALLOWED_HOSTS``; it must be told which, not be shown an empty HTML page.
    """
    if isinstance(exception, DisallowedHost):
        # get_host() is what refused it: read the raw header instead.
        host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
        detail = f"this server does not answer to the host {host[:200]!r}: add it to the server's ALLOWED_HOSTS"
        return error_response(400, "disallowed_host", detail)
    if _wants_page(request):
        return defaults.bad_request(request, exception or BadRequest())  # Django always passes one
    return error_response(400, "bad_request", "the request was refused as malformed")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_page(request):
        return defaults.permission_denied(request, exception or PermissionDenied())
    return error_response(403, "forbidden", "you may not do this")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_page(request):
        return defaults.page_not_found(request, exception)
    return error_response(404, "not_found", f"nothing at {getattr(request, 'path', '')!r}")


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_page(request):
        return defaults.server_error(request)
    return error_response(500, "server_error", "the server failed; the error is logged")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _wants_page(request):
        return django_csrf_failure(request, reason)
    return error_response(403, "csrf_failed", f"CSRF check failed: {reason}")
