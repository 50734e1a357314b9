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


@pytest.fixture
def role_user(django_user_model):
    """``role_user(name, "viewer" | "operator")``: a user who is not staff and holds one role.

    The groups come from a data migration; a transactional test's flush removes them, so they
    are made again here when missing, with the permissions the migration gives them.
    """
    from django.contrib.auth.models import Group, Permission

    from fedplatform.roles import OPERATOR_GROUP, VIEWER_GROUP

    grants = {VIEWER_GROUP: ["view_platform"], OPERATOR_GROUP: ["view_platform", "operate_platform"]}

    def make(name: str, role: str):
        group, created = Group.objects.get_or_create(name=role)
        if created:
            group.permissions.set(Permission.objects.filter(content_type__app_label="fedplatform",
                                                            codename__in=grants[role]))
        user = django_user_model.objects.create_user(name, password=f"pw-{name}-12345")
        user.groups.add(group)
        return user

    return make
