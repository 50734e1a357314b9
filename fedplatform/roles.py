"""Operator roles: *viewer* (the dashboard and the read API) and *operator* (also every control).

A role is a Django group holding permissions (created by a data migration); staff users and
superusers keep every right, so the first operator made with ``createsuperuser`` needs no group.
"""
from rest_framework import permissions

VIEWER_GROUP = "viewer"
OPERATOR_GROUP = "operator"
VIEW_PERMISSION = "fedplatform.view_platform"
OPERATE_PERMISSION = "fedplatform.operate_platform"


def _is_person(user) -> bool:
    # Devices authenticate as Client rows, which are never operators.
    return bool(user and getattr(user, "is_authenticated", False) and hasattr(user, "has_perm"))


def can_view(user) -> bool:
    return _is_person(user) and (user.is_staff or user.has_perm(VIEW_PERMISSION) or user.has_perm(OPERATE_PERMISSION))


def can_operate(user) -> bool:
    return _is_person(user) and (user.is_staff or user.has_perm(OPERATE_PERMISSION))


class CanView(permissions.BasePermission):
    """Reading runs, rounds, clients and tasks: viewers, operators and staff."""

    message = "this needs the viewer or operator role"

    def has_permission(self, request, view) -> bool:
        return can_view(request.user)


class CanOperate(permissions.BasePermission):
    """Changing anything: operators and staff. Viewers may read (safe methods) only."""

    message = "this needs the operator role"

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return can_view(request.user)
        return can_operate(request.user)
