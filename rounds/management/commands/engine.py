"""``manage.py engine``: one engine worker, the task queue's consumer (Huey's ``run_huey``).

Run one beside the server on one machine (``bin/demo`` does), or any number on any machines
sharing the database and Redis. Options are Huey's (``--workers N``, ``--help``).
"""
from django.conf import settings
from huey.contrib.djhuey.management.commands.run_huey import Command as HueyConsumerCommand


class Command(HueyConsumerCommand):
    help = "Run an engine worker: aggregation, evaluation, opening and closing rounds, sweeps."

    def handle(self, *args, **options):
        import torch  # noqa: PLC0415 - only the engine's evaluations need torch's threads set

        torch.set_num_threads(settings.FEDPLATFORM["EVAL_THREADS"])
        from fedplatform.runtime import settle_heap  # noqa: PLC0415
        from rounds.runtask import preload  # noqa: PLC0415

        preload()
        settle_heap()  # a full collection mid-close would stall the round
        return super().handle(*args, **options)
