"""Clients in the admin: read-only rows whose state changes only through the services' actions,
so every change is recorded as a ClientEvent and reaches the dashboards. (A client's updates are
rounds' rows: ``rounds.admin`` adds them to the client's page.)"""
from django.contrib import admin, messages

from fedplatform.audit import audit_record
from fedplatform.errors import FedError

from . import services
from .models import Ban, Client, ClientEvent


class ClientEventInline(admin.TabularInline):
    model = ClientEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "from_status", "to_status", "round", "reason", "actor")
    ordering = ["-id"]

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


def _action(name: str, service, verb: str, description: str):
    """An admin action that applies one client service to each selected client."""

    def run(modeladmin, request, queryset):
        _each(modeladmin, request, queryset, service, verb)

    run.__name__ = name  # the admin tells actions apart by name
    return admin.action(description=description)(run)


pause = _action("pause", services.client_pause, "paused", "Pause selected clients")
resume = _action("resume", services.client_resume, "resumed", "Resume selected clients")
kick = _action("kick", services.client_kick, "kicked", "Kick selected clients (revokes their tokens)")
ban = _action("ban", services.client_ban, "banned", "Kick selected clients and ban their registration addresses")
approve = _action("approve", services.client_approve, "approved", "Approve selected clients (pending admission)")
reject = _action("reject", services.client_reject, "rejected", "Reject selected clients (pending admission)")
revoke = _action("revoke", services.client_revoke, "revoked the tokens of",
                 "Revoke the tokens of selected clients (they leave)")


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
    inlines = [ClientEventInline]

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
