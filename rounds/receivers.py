"""The engine listens to the clients app (which knows nothing of rounds)."""
from django.dispatch import receiver

from clients.signals import client_available, client_dropped

from . import dispatch
from .models import Round, RoundStatus


@receiver(client_dropped)
def forget_dropped_client(sender, *, client, **kwargs) -> None:
    """An open round stops waiting for a client that left, was kicked or paused, or went silent;
    an update it already sent stays. The engine then decides whether the round can close."""
    Expected = Round.expected.through
    Expected.objects.filter(client_id=client.pk, round__status=RoundStatus.OPEN).exclude(
        round__updates__client_id=client.pk
    ).delete()
    dispatch.request_tick(client.run_id)


@receiver(client_available)
def consider_a_round(sender, *, client, **kwargs) -> None:
    dispatch.request_tick(client.run_id, coalesce=True)  # joins come in bursts; a tick covers many
