"""The ``<id:...>`` path converter: a database id, at most MAX_ID_DIGITS ASCII digits.

Django's ``int`` converter takes any number of digits, and an id past 64 bits overflows the
database (a 500); anything else in an id's place (``null,null``, ``false``) matches no pattern
and is a 404 from ``fedplatform.errors.page_not_found``.
"""
from django.urls import register_converter

from .limits import MAX_ID_DIGITS

ID_REGEX = f"[0-9]{{1,{MAX_ID_DIGITS}}}"


class IdConverter:
    regex = ID_REGEX

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
