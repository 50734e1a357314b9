import pytest


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Every test writes model blobs to its own folder and evaluates on a small test subset."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FEDPLATFORM = {**settings.FEDPLATFORM, "EVAL_LIMIT": 500}
