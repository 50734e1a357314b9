from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, redirect, render

from rounds.models import Run


@staff_member_required
def index(request):
    run = Run.objects.order_by("-pk").first()
    if run is not None:
        return redirect("dashboard:run", run_id=run.pk)
    return render(request, "dashboard/run.html", {"runs": [], "run": None})


@staff_member_required
def run_detail(request, run_id: int):
    run = get_object_or_404(Run, pk=run_id)
    rounds = run.round_set.select_related("base_version", "result_version").prefetch_related("expected", "updates")
    context = {
        "runs": Run.objects.order_by("-pk")[:50],
        "run": run,
        "rounds": rounds,
        "clients": run.clients.order_by("pk"),
        "versions": run.versions.order_by("number"),
        "fragment": request.GET.get("fragment") == "1",
    }
    template = "dashboard/_run_body.html" if context["fragment"] else "dashboard/run.html"
    return render(request, template, context)
