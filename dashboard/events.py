"""The one publish path: services call ``publish``; only this module talks to Channels."""
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

DASHBOARD_GROUP = "dashboard"
log = logging.getLogger("fedplatform.events")


def _send(event: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            DASHBOARD_GROUP, {"type": "fed.event", "event": event, "data": payload}
        )
    except Exception:  # a dashboard outage must never fail a device's request
        log.exception("could not publish %s", event)


def publish(event: str, payload: dict[str, Any]) -> None:
    """Send ``event`` to dashboards once the current transaction commits (never on rollback)."""
    transaction.on_commit(lambda: _send(event, payload))
