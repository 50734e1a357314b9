from django.contrib import admin, messages

from fedplatform.errors import FedError

from . import services
from .models import Client, ClientEvent


class ClientEventInline(admin.TabularInline):
    model = ClientEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "from_status", "to_status", "round", "reason", "actor"]

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
    list_display = ["name", "run", "status", "progress", "num_examples", "held_version", "last_seen", "bytes_sent"]
    list_filter = ["status", "run"]
    search_fields = ["name"]
    # Status changes only through the actions above, so every change is recorded and published.
    readonly_fields = [f.name for f in Client._meta.fields]
    actions = [pause, resume, kick]
    inlines = [ClientEventInline]

    def has_add_permission(self, request) -> bool:
        return False  # clients register themselves
