import time

from django.core.management.base import BaseCommand

from rounds.engine import sweep_all


class Command(BaseCommand):
    help = (
        "Run the engine's sweep (deadlines, offline clients, dead claims) once, or every N seconds. "
        "Engine workers (manage.py run_huey) already sweep on the queue's scheduler; this is for "
        "operators and scripts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="repeat every N seconds (0: once)")

    def handle(self, *args, every: float, **options):
        while True:
            sweep_all()
            if not every:
                return
            time.sleep(every)
