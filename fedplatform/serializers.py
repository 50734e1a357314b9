"""Serializer plumbing shared by the apps.

DRF deep-copies a serializer's fields for every instance, and copying a field re-runs its
constructor (validators and all): for a registration, more than validating the data itself.
Here each instance gets shallow copies of fields built once per class. ``bind`` sets what is
particular to an instance (name, parent, source) on the copy; what a copy shares with the class's
field (validators, choices) is never changed after construction. A list's or dict's child is
copied and bound to the copy as well; nested serializers and many-relations, which hold bound
fields of their own, still get deep copies.
"""
import copy
from typing import Any, ClassVar

from rest_framework import serializers


def _copy(field):
    if isinstance(field, serializers.BaseSerializer) or hasattr(field, "child_relation"):
        return copy.deepcopy(field)
    made = copy.copy(field)
    if hasattr(field, "child"):  # a list or dict field: a copy of its (already bound) child, whose parent is the copy
        made.child = copy.copy(field.child)
        made.child.parent = made
    return made


def _copies(fields: dict) -> dict:
    return {name: _copy(f) for name, f in fields.items()}


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
