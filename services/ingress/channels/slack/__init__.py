"""Slack: the Events API over HTTP in, the Web API (`chat.postMessage`) out."""

from .adapter import SlackAdapter

__all__ = ["SlackAdapter"]
