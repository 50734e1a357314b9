"""Pieces every API app shares: error schema, permissions, the binary tensor media type."""
import json

from django.conf import settings
from drf_spectacular.utils import inline_serializer
from rest_framework import parsers, permissions, renderers, serializers

from fedcore.codec import CONTENT_TYPE

from .errors import TooLarge
from .identity import Device
from .roles import can_operate, can_view

ErrorSerializer = inline_serializer(
    name="Error",
    fields={"code": serializers.CharField(), "detail": serializers.CharField()},
)
# The error answers every operation documents (docs/api.md): among them 406 (the request's Accept
# names nothing the operation renders) and 413 (a declared body over the limit, refused by the
# ASGI handler whatever the method). An operation with its own (410, ...) lists them too.
ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 406, 409, 413, 429)}
# ...and one that parses a JSON or form body: 415 for a body in another media type, or none.
BODY_ERRORS = {**ERRORS, 415: ErrorSerializer}


class IsClient(permissions.BasePermission):
    """A device acting as itself (object checks compare the client with the resource)."""

    message = "this endpoint is for registered devices"

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Device)

    def has_object_permission(self, request, view, obj) -> bool:
        return obj == request.user


class IsClientSelfOrOperator(permissions.BasePermission):
    """A device acting on itself, or an operator role: viewers may read, operators may also act."""

    message = "a client may act only as itself"

    def _role(self, request) -> bool:
        return can_view(request.user) if request.method in permissions.SAFE_METHODS else can_operate(request.user)

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Device) or self._role(request)

    def has_object_permission(self, request, view, obj) -> bool:
        return obj == request.user or (not isinstance(request.user, Device) and self._role(request))


class TensorRenderer(renderers.BaseRenderer):
    media_type = CONTENT_TYPE
    format = "fedt"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"  # an error body, and says so
        return json.dumps(data).encode()


class TensorParser(parsers.BaseParser):
    """Reads a codec body without trusting its length: at most the configured limit, plus one byte
    to tell "exactly at the limit" from "over it". (The update upload reads its body itself, with
    its model's limit: rounds.device_input.read_body.)"""

    media_type = CONTENT_TYPE

    # request.data is whatever parse returns; the stubs allow mappings only.
    def parse(self, stream, media_type=None, parser_context=None) -> bytes:  # type: ignore[override]
        limit = settings.FEDPLATFORM["MAX_UPLOAD_BYTES"]
        if stream is None:
            return b""
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"body exceeds the upload limit of {limit} bytes", "too_large")
        return data
