"""What the clients app tells the apps that build on it, without knowing them."""
from django.dispatch import Signal

# Sent inside the transaction that moved a client to one of DROPPING_STATUSES (paused, offline,
# left, kicked), with ``client``: whoever waits for that client's work should stop waiting.
client_dropped = Signal()
# Sent inside the transaction that made a client selectable (``client``): a round may open now.
client_available = Signal()
