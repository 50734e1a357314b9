"""Clients in the admin: read-only rows whose state changes only through the services' actions,
so every change is recorded as a ClientEvent and reaches the dashboards."""
from django.contrib import admin, messages

from fedplatform.errors import FedError
from rounds.models import Update

from . import services
from .models import Client, ClientEvent


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


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "status", "progress", "num_examples", "held_version", "last_seen",
                    "bytes_sent", "bytes_received"]
    list_filter = ["status", "run"]
    list_select_related = ["run"]
    search_fields = ["name", "run__name"]
    # Status changes only through the actions above, so every change is recorded and published.
    readonly_fields = [f.name for f in Client._meta.fields]
    actions = [pause, resume, kick]
    inlines = [ClientEventInline, ClientUpdateInline]

    def has_add_permission(self, request) -> bool:
        return False  # clients register themselves

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting would bypass the state machine (no event, no round bookkeeping): kick instead.
        return False
