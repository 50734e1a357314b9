from channels.generic.websocket import AsyncJsonWebsocketConsumer

from fedplatform.events import EVENTS_GROUP, relay


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Forwards the domain's events (fedplatform.events) to a logged-in operator's browser."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        relay.ensure_started()
        await self.channel_layer.group_add(EVENTS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(EVENTS_GROUP, self.channel_name)

    async def fed_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})
