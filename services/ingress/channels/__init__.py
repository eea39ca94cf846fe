"""Chat channel adapters in ingress (docs/channels.md): `base` is what an adapter is,
`registry` which platforms exist and `ChannelHost` runs them, `inbound` stores their messages
(after the access policy), `delivery` sends CM_OUTBOUND's replies; one package per platform."""

from .base import ChannelAdapter
from .registry import CHANNELS, ChannelHost

__all__ = ["CHANNELS", "ChannelAdapter", "ChannelHost"]
