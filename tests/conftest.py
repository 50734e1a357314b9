import pytest
from huey.contrib.djhuey import HUEY

# In-process tests run the engine's tasks at once, in the caller (Huey's immediate mode), each
# after the one that enqueued it; the end-to-end tests run real engine workers instead.
HUEY.immediate = True


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Every test writes model blobs to its own folder and evaluates on a small test subset."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "EVAL_LIMIT": 500}


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Each test starts with the request counters of a freshly started server: tests reuse
    client and user ids, and the suite as a whole sends more than any one device would."""
    from django.core.cache import caches

    caches["throttle"].clear()
