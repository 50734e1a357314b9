"""Clients in the admin: read-only rows whose state changes only through the services' actions,
so every change is recorded as a ClientEvent and reaches the dashboards."""
from django.contrib import admin, messages

from fedplatform.audit import audit_record
from fedplatform.errors import FedError
from rounds.models import Update

from . import services
from .models import Ban, Client, ClientEvent


class ClientEventInline(admin.TabularInline):
    model = ClientEvent
    extra = 0
    can_delete = False
    fields = ["at", "from_status", "to_status", "round", "reason", "actor"]
    readonly_fields = fields
    ordering = ["-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ClientUpdateInline(admin.TabularInline):
    model = Update
    extra = 0
    can_delete = False
    fields = ["round", "num_examples", "bytes_wire", "encoding", "metrics", "received_at"]
    readonly_fields = fields
    show_change_link = True
    verbose_name_plural = "updates sent"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _each(modeladmin, request, queryset, service, verb: str) -> None:
    done = 0
    for client in queryset:
        try:
            service(client=client, actor=request.user.get_username())
            done += 1
        except FedError as exc:
            modeladmin.message_user(request, f"{client}: {exc.detail}", messages.WARNING)
    modeladmin.message_user(request, f"{verb} {done} client(s)")


@admin.action(description="Pause selected clients")
def pause(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_pause, "paused")


@admin.action(description="Resume selected clients")
def resume(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_resume, "resumed")


@admin.action(description="Kick selected clients (revokes their tokens)")
def kick(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_kick, "kicked")


@admin.action(description="Kick selected clients and ban their registration addresses")
def ban(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_ban, "banned")


@admin.action(description="Approve selected clients (pending admission)")
def approve(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_approve, "approved")


@admin.action(description="Reject selected clients (pending admission)")
def reject(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_reject, "rejected")


@admin.action(description="Revoke the tokens of selected clients (they leave)")
def revoke(modeladmin, request, queryset):
    _each(modeladmin, request, queryset, services.client_revoke, "revoked the tokens of")


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "status", "admission", "progress", "num_examples", "held_version", "last_seen",
                    "bytes_sent", "bytes_received"]
    list_filter = ["status", "admission", "run"]
    list_select_related = ["run"]
    search_fields = ["name", "run__name"]
    # Status changes only through the actions above, so every change is recorded and published.
    readonly_fields = [f.name for f in Client._meta.fields]
    actions = [pause, resume, kick, ban, approve, reject, revoke]
    inlines = [ClientEventInline, ClientUpdateInline]

    def has_add_permission(self, request) -> bool:
        return False  # clients register themselves

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting would bypass the state machine (no event, no round bookkeeping): kick instead.
        return False


@admin.register(Ban)
class BanAdmin(admin.ModelAdmin):
    """Bans are made by kicking with a ban; deleting one lets its address register again."""

    list_display = ["address", "reason", "actor", "created_at"]
    search_fields = ["address", "reason"]
    readonly_fields = [f.name for f in Ban._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def delete_model(self, request, obj: Ban) -> None:
        self.delete_queryset(request, Ban.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        for found in queryset:
            audit_record(actor=request.user.get_username(), action="ban.lift", target_type="ban",
                         target_id=found.pk, details={"address": found.address})
        queryset.delete()
