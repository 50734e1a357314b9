"""The dashboard's pages: one HTML shell per run and the JSON snapshot it renders from.

Views stay thin: the snapshot is built in ``snapshot.py``; every change the page makes goes
through the REST API, so the browser has no write path of its own.
"""
from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from clients.models import DROPPING_STATUSES, GONE_STATUSES, SELECTABLE_STATUSES
from fedplatform.roles import can_operate, can_view
from rounds.lifecycle import RUN_MOVES
from rounds.models import TERMINAL_RUN_STATUSES, Run

from . import fields, snapshot

# Viewers, operators and staff; anyone else is sent to the login page.
viewer_required = user_passes_test(can_view, login_url="dashboard:login")


def _names(statuses) -> list[str]:
    return sorted(str(status) for status in statuses)


# The status sets the page's script uses, taken from their one home (clients/models.py,
# rounds/models.py, and the run moves of rounds/lifecycle.py) and embedded in the page
# (static/dashboard/js/statuses.js reads them): the script lists none of its own.
STATUS_SETS = {
    "client": {
        "gone": _names(GONE_STATUSES),
        "dropping": _names(DROPPING_STATUSES),
        "selectable": _names(SELECTABLE_STATUSES),
    },
    "run": {
        "terminal": _names(TERMINAL_RUN_STATUSES),
        # The statuses each run control may be used from.
        "controls": {action: _names(allowed_from) for action, (allowed_from, _) in RUN_MOVES.items()},
    },
}


def _page(request: HttpRequest, run: Run | None) -> HttpResponse:
    context = {
        "run": run,
        "snapshot": snapshot.build(run) if run else snapshot.empty(),
        "tunable_fields": fields.tunable_specs(),
        "create_fields": fields.create_specs(),
        "task_defaults": fields.task_defaults(),
        "strategy_defaults": fields.strategy_defaults(),
        "status_sets": STATUS_SETS,
        # A viewer sees no controls (the API would refuse them anyway).
        "can_operate": can_operate(request.user),
    }
    return render(request, "dashboard/run.html", context)


@require_GET
@viewer_required
def index(request: HttpRequest) -> HttpResponse:
    # The newest run is what an operator usually wants; the address stays "/" so it keeps
    # following new runs across visits.
    return _page(request, Run.objects.order_by("-pk").first())


@require_GET
@viewer_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    return _page(request, get_object_or_404(Run, pk=run_id))


@require_GET
@never_cache
@viewer_required
def run_snapshot(request: HttpRequest, run_id: int) -> JsonResponse:
    return JsonResponse(snapshot.build(get_object_or_404(Run, pk=run_id)))
