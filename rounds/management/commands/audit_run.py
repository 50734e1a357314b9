from django.core.management.base import BaseCommand, CommandError

from fedcore import codec
from rounds import blobs, runstrategy
from rounds.broadcast import check_chain
from rounds.engine import aggregate_round
from rounds.models import Broadcast, RoundStatus, Run


class Command(BaseCommand):
    help = (
        "Re-aggregate every closed round of a run from its recorded updates and check that the "
        "stored global versions are exactly what they give, then that every broadcast replica "
        "follows from the previous one and its version."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id: int, **options):
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no run {run_id}")
        mismatches = 0
        rounds = run.round_set.filter(status=RoundStatus.CLOSED).select_related("base_version", "result_version")
        for rnd in rounds.order_by("number"):
            updates = list(rnd.updates.order_by("pk"))
            result = aggregate_round(rnd, updates)  # the very path closing took, update by update
            version = rnd.result_version
            if version is None:
                raise CommandError(f"round {rnd.number} is closed but has no result version")
            stored = codec.decode(blobs.load(version.blob.name), kind="full").arrays
            same = _identical(result.model, stored) and _identical(result.state, runstrategy.load_state(version))
            mismatches += not same
            verdict = "ok" if same else "MISMATCH"
            self.stdout.write(f"round {rnd.number}: {len(updates)} updates -> v{version.number}: {verdict}")
        if mismatches:
            raise CommandError(f"{mismatches} round(s) do not match their recorded updates")
        # What devices were sent: each broadcast re-derived from the previous replica and the exact
        # version it follows, and every stored delta leading bit for bit to the stored replica.
        problems = check_chain(run)
        for problem in problems:
            self.stdout.write(f"broadcast {problem}: MISMATCH")
        if problems:
            raise CommandError(f"{len(problems)} broadcast(s) do not match the versions they follow")
        broadcasts = Broadcast.objects.filter(version__run=run).count()
        self.stdout.write(f"run {run.pk}: {rounds.count()} closed round(s), every version reproduced exactly; "
                          f"{broadcasts} broadcast(s), every replica rebuilt exactly")


def _identical(a: dict, b: dict) -> bool:
    """Same names, dtypes and bits (NaN payloads and signed zeros included)."""
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )
