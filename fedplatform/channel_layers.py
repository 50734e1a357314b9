"""The channel layer dashboard events travel on: in memory for one server process, Redis across
several. Kept apart from settings so the scale-out tests build exactly what production runs."""

# channels-redis waits for a group's next message with a blocking BZPOPMIN of 5 seconds. The
# client's read timeout must outlast that wait: redis-py 8 made it 5 seconds by default, so every
# quiet dashboard socket would end in "Timeout reading from" instead of waiting. Long enough to
# cover the wait, short enough that a dead connection is still noticed.
REDIS_SOCKET_TIMEOUT_S = 30


# Messages a channel holds before sends to it are dropped (channels' default is 100). A fleet
# joining makes thousands of status events a minute, and a listener that fell behind for a moment
# lost what came next: once, the round.opened that should have woken its devices.
CHANNEL_CAPACITY = 10_000


def channel_layers(redis_url: str) -> dict:
    """The CHANNEL_LAYERS setting: Redis when `redis_url` is set, else an in-process layer."""
    if not redis_url:
        return {"default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }}
    host = {"address": redis_url, "socket_timeout": REDIS_SOCKET_TIMEOUT_S}
    return {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [host], "capacity": CHANNEL_CAPACITY},
    }}
