"""WhatsApp Cloud API: webhooks in, Graph API `/{phone-number-id}/messages` out."""

from .adapter import WhatsAppAdapter

__all__ = ["WhatsAppAdapter"]
