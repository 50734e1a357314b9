"""Runs, rounds, versions and updates in the admin. Every change goes through the run services
(``rounds.lifecycle``): run control, creation and configuration edits alike, so the admin
records configuration versions and publishes the same events the API does."""
from django import forms
from django.contrib import admin, messages

from clients.admin import ClientAdmin
from clients.models import Client
from fedplatform.errors import FedError

from fedcore.strategies import StrategyConfigError, validate_strategy
from fedcore.tasks.registry import BUILTIN_TASK

from . import lifecycle, runtask
from .models import TUNABLE_FIELDS, ModelExport, ModelVersion, Round, Run, RunConfig, Update

# Editable on an existing run: a label, and the configuration an operator may tune mid-run.
EDITABLE_ON_CHANGE = {"name", *TUNABLE_FIELDS}


def _control(modeladmin, request, queryset, action_name: str) -> None:
    for run in queryset:
        try:
            lifecycle.run_control(run=run, action=action_name, actor=request.user.get_username())
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


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class RoundInline(_ReadOnlyInline):
    model = Round
    fields = readonly_fields = ("number", "status", "config", "opened_at", "closed_at", "metrics")
    show_change_link = True


class RunConfigInline(_ReadOnlyInline):
    model = RunConfig
    fields = readonly_fields = ("version", "changed", "author", "created_at")
    verbose_name_plural = "configuration versions"


class UpdateInline(_ReadOnlyInline):
    model = Update
    fields = readonly_fields = ("client", "num_examples", "bytes_wire", "encoding", "metrics", "received_at")


class RunAdminForm(forms.ModelForm):
    class Meta:
        model = Run
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "task" in self.fields:  # only on creation: a run's task is fixed once it exists
            self.fields["task"] = forms.ChoiceField(
                choices=[(path, f"{path} ({runtask.describe(path)['title']})") for path in runtask.offered_tasks()],
                initial=BUILTIN_TASK, help_text="the offered tasks: built-in, installed packages', FEDPLATFORM_TASKS",
            )

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if self.instance.pk and self.instance.is_terminal and set(self.changed_data) & set(TUNABLE_FIELDS):
            raise forms.ValidationError(f"this run is {self.instance.status}; its configuration is final")
        if "strategy_config" in cleaned:
            strategy = cleaned.get("strategy") or self.instance.strategy
            try:
                cleaned["strategy_config"] = validate_strategy(strategy, cleaned["strategy_config"])
            except StrategyConfigError as err:
                self.add_error("strategy_config", str(err))
        return cleaned


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    form = RunAdminForm
    list_display = ["name", "status", "task", "rounds", "clients_per_round", "created_at"]
    list_filter = ["status", "task"]
    search_fields = ["name"]
    readonly_fields = ["status", "manifest_digest", "created_at", "started_at", "finished_at"]
    actions = [start, pause, resume, stop]
    inlines = [RunConfigInline, RoundInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        # The model layout and initial weights are fixed once a run exists; the rest changes
        # through run_configure, which versions it.
        fixed = [f.name for f in Run._meta.fields if f.editable and f.name not in EDITABLE_ON_CHANGE]
        return self.readonly_fields + fixed

    def save_model(self, request, obj, form, change):
        author = request.user.get_username()
        if change:
            changes = {f: form.cleaned_data[f] for f in form.changed_data if f in EDITABLE_ON_CHANGE}
            if changes:
                lifecycle.run_configure(run=Run.objects.get(pk=obj.pk), changes=changes, author=author)
            obj.refresh_from_db()
            return
        config = {f: form.cleaned_data[f] for f in form.cleaned_data if f in {x.name for x in Run._meta.fields}}
        created = lifecycle.run_create(author=author, **config)
        obj.pk = created.pk
        obj.refresh_from_db()


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "config", "opened_at", "closed_at"]
    list_filter = ["status", "run"]
    list_select_related = ["run", "config"]
    search_fields = ["run__name"]
    readonly_fields = [f.name for f in Round._meta.fields] + ["expected"]
    inlines = [UpdateInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # rounds are history; the engine abandons, never deletes


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "size_bytes", "float32_bytes", "created_at"]
    list_filter = ["run"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # rounds point at their versions


@admin.register(Update)
class UpdateAdmin(admin.ModelAdmin):
    list_display = ["__str__", "num_examples", "bytes_wire", "encoding", "received_at"]
    list_filter = ["round__run", "encoding"]
    list_select_related = ["round__run", "client"]
    search_fields = ["client__name", "round__run__name"]
    readonly_fields = [f.name for f in Update._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an accepted update is part of a round's history


@admin.register(ModelExport)
class ModelExportAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "size_bytes", "created_at", "finished_at"]
    list_filter = ["status", "format", "version__run"]
    list_select_related = ["version__run"]
    readonly_fields = [f.name for f in ModelExport._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # made by the first download request (API or dashboard)

    # Deleting one is allowed: the next request renders it again (after a failure, say).


class ClientUpdateInline(admin.TabularInline):
    model = Update
    extra = 0
    can_delete = False
    fields = readonly_fields = ("round", "num_examples", "bytes_wire", "encoding", "metrics", "received_at")
    show_change_link = True
    verbose_name_plural = "updates sent"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ClientWithUpdatesAdmin(ClientAdmin):
    """The clients app's admin, with the updates each client sent: the clients app knows nothing
    of rounds, so the inline is added here, where updates live."""

    inlines = [*ClientAdmin.inlines, ClientUpdateInline]


# Importing clients.admin above registered the plain one; replace it.
admin.site.unregister(Client)
admin.site.register(Client, ClientWithUpdatesAdmin)
