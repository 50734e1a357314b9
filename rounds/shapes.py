"""The one serialised shape of each entity, shared by the API, the events and the dashboard's
snapshot: whatever a browser or a device sees of a run or a round is built here."""
from .models import Round, Run
from .serializers import RoundSerializer, RunSerializer


def run_shape(run: Run) -> dict:
    return dict(RunSerializer(run).data)


def round_shape(rnd: Round) -> dict:
    return dict(RoundSerializer(rnd).data)
