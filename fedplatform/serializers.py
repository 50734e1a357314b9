"""Serializer plumbing shared by the apps."""
import copy
from typing import Any, ClassVar

from rest_framework import serializers


class ModelSerializer(serializers.ModelSerializer):
    """DRF's ModelSerializer, introspecting its model once per class instead of once per object.

    Building the fields from the model's meta costs about as much as serialising the object
    itself, and the same shapes are built for every event and every device request. The built
    fields are copied for each instance, as DRF does with declared fields.
    """

    _built_fields: ClassVar[dict[str, Any]]  # per class, set on first use (no default: see get_fields)

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return copy.deepcopy(built)
