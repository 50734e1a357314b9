"""Bounds on what devices may send: the one home of each fixed limit (docs/security.md).

The configurable ones (request and upload body sizes) are ``settings.FEDPLATFORM``'s
``MAX_REQUEST_BYTES`` and ``MAX_UPLOAD_BYTES``; these here are part of the protocol.
"""

# A device's example count, at registration and in ``X-Num-Examples``: a weight in FedAvg, so it
# must be positive and small enough that a sum over thousands of devices stays exact in a float64.
MAX_NUM_EXAMPLES = 10**9
# Ids in paths and query strings: ASCII digits, at most this many, so every one fits a signed
# 64-bit column (a longer one is a 404 or a 400, never a database overflow).
MAX_ID_DIGITS = 18
# ``?wait=`` seconds: digits only (the server clamps the value to FEDPLATFORM["LONG_POLL_MAX"]).
MAX_WAIT_DIGITS = 6

# ``X-Metrics``: a flat JSON object of at most MAX_METRICS numbers, each key ASCII letters, digits
# and ``_.-`` (at most MAX_METRIC_KEY of them), each value finite with |value| <= MAX_METRIC_ABS.
# The bound keeps every product with an example count, and every sum over a round, finite.
MAX_METRICS_HEADER = 4096
MAX_METRICS = 32
MAX_METRIC_KEY = 64
MAX_METRIC_ABS = 1e15
