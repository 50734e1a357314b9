"""One contender in a stampede: set Django up, wait for the agreed instant, then sweep.

Run as ``python race_sweep.py START_AT`` with the server's environment and interpreter (the project
installed in it); prints what it saw.
"""
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fedplatform.settings")

import django  # noqa: E402

django.setup()

from rounds.models import ModelVersion  # noqa: E402
from rounds.engine import sweep_all  # noqa: E402

start_at = float(sys.argv[1])
time.sleep(max(0.0, start_at - time.time()))
sweep_all()
print(f"versions={ModelVersion.objects.count()}")
