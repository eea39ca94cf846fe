"""Telegram Bot API: long polling or webhook in, sendMessage/editMessageText out."""

from .adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
