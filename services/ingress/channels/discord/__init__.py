"""Discord: the Gateway (WebSocket) in, REST `POST /channels/{id}/messages` out (and `PATCH` for
streamed previews)."""

from .adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
