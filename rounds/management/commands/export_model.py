from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from fedcore.export import NotExportable
from rounds import exports
from rounds.models import Run


class Command(BaseCommand):
    help = (
        "Write a run's global model as safetensors (tensors by state_dict name) or ONNX, here and now "
        "(the API asks the engine for the same file)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # "resolve": this command's --version is the model's, replacing Django's own (its release).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int, metavar="RUN")
        parser.add_argument("--version", type=int, metavar="N", help="the model version (default: the newest)")
        parser.add_argument("--format", required=True, choices=exports.FORMATS)
        parser.add_argument("--output", required=True, type=Path, help="the file to write")

    def handle(self, *args, run_id: int, version: int | None, output: Path, **options):
        fmt = options["format"]
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no run {run_id}")
        versions = run.versions.order_by("-number")
        found = (versions if version is None else versions.filter(number=version)).first()
        if found is None:
            raise CommandError(f"run {run_id} has no version {version}")
        try:
            data = exports.render_version(found, fmt)  # synchronous: a command may do heavy work
        except NotExportable as err:
            raise CommandError(str(err)) from err
        Path(output).write_bytes(data)
        self.stdout.write(f"run {run.pk} version {found.number} as {fmt}: {len(data)} bytes written to {output}")
