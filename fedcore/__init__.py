"""Framework-neutral core of fedplatform: wire codec, models, data, partitions, training.

Shared by the Django server and the worker, so it must never import Django.
"""
