"""The JSON parser every API view uses (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

Its own module: DRF imports it while it defines ``APIView``, so it must not import anything that
imports DRF's views.
"""
import io

from django.conf import settings
from rest_framework import exceptions, parsers

from .errors import TooLarge


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded: it reads at most ``MAX_REQUEST_BYTES``, and JSON nested past
    Python's recursion limit is a 400 (DRF's parser lets the RecursionError through: a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.FEDPLATFORM["MAX_REQUEST_BYTES"]
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"body exceeds the request limit of {limit} bytes", "too_large")
        try:
            return super().parse(io.BytesIO(data), media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from exc
