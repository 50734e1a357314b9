from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from fedplatform.events import EVENTS_GROUP, relay
from fedplatform.roles import can_view


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Forwards the domain's events (fedplatform.events) to a logged-in viewer's or operator's
    browser. The socket only ever sends: controls go through the REST API and its roles."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(can_view)(user):
            await self.close(code=4403)
            return
        relay.ensure_started()
        await self.channel_layer.group_add(EVENTS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(EVENTS_GROUP, self.channel_name)

    async def fed_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})

    async def receive_json(self, content, **kwargs) -> None:
        # Nothing is accepted from the browser on this socket, whatever its role.
        await self.close(code=4405)
