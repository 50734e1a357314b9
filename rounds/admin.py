from django.contrib import admin, messages

from fedplatform.errors import FedError

from . import services
from .models import ModelVersion, Round, Run, Update


def _control(modeladmin, request, queryset, action_name: str) -> None:
    for run in queryset:
        try:
            services.run_control(run=run, action=action_name)
            modeladmin.message_user(request, f"{run}: {action_name} done")
        except FedError as exc:
            modeladmin.message_user(request, f"{run}: {exc.detail}", messages.WARNING)


@admin.action(description="Start selected runs")
def start(modeladmin, request, queryset):
    _control(modeladmin, request, queryset, "start")


@admin.action(description="Pause selected runs")
def pause(modeladmin, request, queryset):
    _control(modeladmin, request, queryset, "pause")


@admin.action(description="Resume selected runs")
def resume(modeladmin, request, queryset):
    _control(modeladmin, request, queryset, "resume")


@admin.action(description="Stop selected runs")
def stop(modeladmin, request, queryset):
    _control(modeladmin, request, queryset, "stop")


class RoundInline(admin.TabularInline):
    model = Round
    extra = 0
    can_delete = False
    fields = ["number", "status", "opened_at", "closed_at", "metrics"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class UpdateInline(admin.TabularInline):
    model = Update
    extra = 0
    can_delete = False
    fields = ["client", "num_examples", "bytes_wire", "encoding", "metrics", "received_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "arch", "dataset", "rounds", "clients_per_round", "created_at"]
    list_filter = ["status", "arch", "dataset"]
    search_fields = ["name"]
    readonly_fields = ["status", "created_at", "started_at", "finished_at"]
    actions = [start, pause, resume, stop]
    inlines = [RoundInline]

    def get_readonly_fields(self, request, obj=None):
        # The model layout and initial weights are fixed once a run exists.
        return self.readonly_fields + (["arch", "dataset", "seed"] if obj else [])

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        config = {f: form.cleaned_data[f] for f in form.cleaned_data if f in {x.name for x in Run._meta.fields}}
        created = services.run_create(**config)
        obj.pk = created.pk
        obj.refresh_from_db()


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "opened_at", "closed_at"]
    list_filter = ["status", "run"]
    readonly_fields = [f.name for f in Round._meta.fields] + ["expected"]
    inlines = [UpdateInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "size_bytes", "float32_bytes", "created_at"]
    list_filter = ["run"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Update)
class UpdateAdmin(admin.ModelAdmin):
    list_display = ["__str__", "num_examples", "bytes_wire", "encoding", "received_at"]
    list_filter = ["round__run"]
    search_fields = ["client__name"]
    readonly_fields = [f.name for f in Update._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
