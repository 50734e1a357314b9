from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .events import DASHBOARD_GROUP


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Forwards platform events to a logged-in operator's browser."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def fed_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})
