import time

from django.core.management.base import BaseCommand

from rounds.services import sweep_all


class Command(BaseCommand):
    help = "Enforce deadlines and offline timeouts for every running run (once, or every N seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="repeat every N seconds (0: once)")

    def handle(self, *args, every: float, **options):
        while True:
            sweep_all()
            if not every:
                return
            time.sleep(every)
