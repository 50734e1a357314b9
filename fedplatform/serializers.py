"""Serializer plumbing shared by the apps.

DRF deep-copies a serializer's fields for every instance, and copying a field re-runs its
constructor (validators and all): for a registration, more than validating the data itself.
Here each instance gets shallow copies of fields built once per class. ``bind`` sets what is
particular to an instance (name, parent, source) on the copy; what a copy shares with the class's
field (validators, choices) is never changed after construction. Fields that hold fields (nested
serializers, lists, dicts, many-relations) still get deep copies: their children are bound to them.
"""
import copy
from typing import Any, ClassVar

from rest_framework import serializers


def _holds_fields(field) -> bool:
    return isinstance(field, serializers.BaseSerializer) or hasattr(field, "child") or hasattr(field, "child_relation")


def _copies(fields: dict) -> dict:
    return {name: copy.deepcopy(f) if _holds_fields(f) else copy.copy(f) for name, f in fields.items()}


class Serializer(serializers.Serializer):
    """DRF's Serializer with cheap per-instance fields (see the module docstring)."""

    def get_fields(self):
        return _copies(self._declared_fields)


class ModelSerializer(serializers.ModelSerializer):
    """DRF's ModelSerializer, introspecting its model once per class instead of once per object,
    with cheap per-instance fields (see the module docstring)."""

    _built_fields: ClassVar[dict[str, Any]]  # per class, set on first use (no default: see get_fields)

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return _copies(built)
