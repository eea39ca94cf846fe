"""Discord: the Gateway (WebSocket) in, REST `POST /channels/{id}/messages` out."""

from .adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
