"""Runs name a task: existing runs (arch + dataset) become runs of the built-in image task with
that configuration, keeping their rounds, versions and updates."""
from django.db import migrations, models

BUILTIN_TASK = "fedcore.tasks.vision:image_classification"


def to_task(apps, schema_editor):
    from fedcore import codec
    from fedcore.state import state_to_arrays
    from fedcore.tasks import load_task, manifest_digest, seeded_model

    Run = apps.get_model("rounds", "Run")
    task = load_task(BUILTIN_TASK)
    digests: dict[tuple[str, str], str] = {}
    for run in Run.objects.all():
        key = (run.arch, run.dataset)
        if key not in digests:
            config = task.validate_config({"arch": run.arch, "dataset": run.dataset})
            digests[key] = manifest_digest(codec.manifest_of(state_to_arrays(seeded_model(task, config, 0))))
        run.task, run.task_config, run.manifest_digest = BUILTIN_TASK, {"arch": run.arch, "dataset": run.dataset}, digests[key]
        run.save(update_fields=["task", "task_config", "manifest_digest"])


def to_arch(apps, schema_editor):
    Run = apps.get_model("rounds", "Run")
    for run in Run.objects.all():
        if run.task != BUILTIN_TASK:
            raise RuntimeError(f"run {run.pk} trains {run.task}, which has no arch/dataset form")
        run.arch, run.dataset = run.task_config["arch"], run.task_config["dataset"]
        run.save(update_fields=["arch", "dataset"])


class Migration(migrations.Migration):
    dependencies = [("rounds", "0002_engine_claims_and_evaluation")]

    operations = [
        migrations.AddField(
            model_name="run", name="task",
            field=models.CharField(default=BUILTIN_TASK, help_text="package.module:attribute", max_length=200),
        ),
        migrations.AddField(
            model_name="run", name="task_config",
            field=models.JSONField(blank=True, default=dict, help_text="the task's configuration, defaults filled in"),
        ),
        migrations.AddField(
            model_name="run", name="manifest_digest",
            field=models.CharField(default="", editable=False, help_text="tensor names, dtypes and shapes", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(to_task, to_arch),
        migrations.RemoveField(model_name="run", name="arch"),
        migrations.RemoveField(model_name="run", name="dataset"),
    ]
