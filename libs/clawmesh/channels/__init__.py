"""Channel access control (OpenClaw semantics): who may reach an agent through a channel.

    from clawmesh.channels import AccessControl, AccessRequest, Admit, Command, Deny, PairingChallenge
    control = AccessControl(config, kv=buckets["pairing"], publish=nc.publish)
    decision = await control.check(AccessRequest(channel="telegram", chat_type="direct", sender_id="42"))

`access.decide` is the pure decision; `pairing.PairingStore` the KV-backed pairing state;
`config_checks` what the loader reports about channel access settings.

Platform knowledge without I/O lives beside it: `accounts` (a channel's accounts as OpenClaw
merges them) and one module per platform (`telegram`: updates as routing input, token, reply
splitting). The adapters that talk to the platforms are in ingress (`clawmesh_ingress.channels`).
"""

from typing import TYPE_CHECKING, Any

from ._approve import (
    NOT_AUTHORIZED,
    ApproveCommand,
    ApproveRefused,
    approval_prompt,
    chat_approvals_enabled,
    is_approver,
    parse_approve,
)
from ._checks import config_checks
from ._commands import CONTROL_COMMANDS, approve_body, detect_command, parse_command
from ._mentions import normalize_mention_text, unsafe_reason
from ._normalize import normalize_e164, normalize_entry, normalize_sender
from .access import (
    AccessRequest,
    Admit,
    ChannelPolicy,
    ChatType,
    Command,
    Decision,
    Deny,
    PairingChallenge,
    PairingRequired,
    decide,
)

if TYPE_CHECKING:
    from .control import AccessControl, AccessDenied
    from .pairing import (
        CODE_ALPHABET,
        CODE_LENGTH,
        MAX_PENDING,
        PENDING_TTL_SECONDS,
        PairingRequest,
        PairingStore,
        new_code,
        pairing_reply,
    )

# The KV-backed parts need the NATS client: loaded on first use, so that the config checks
# (which every CLI command runs) do not import nats and asyncio.
_LAZY = {
    "AccessControl": "control",
    "AccessDenied": "control",
    **dict.fromkeys(
        (
            "CODE_ALPHABET",
            "CODE_LENGTH",
            "MAX_PENDING",
            "PENDING_TTL_SECONDS",
            "PairingRequest",
            "PairingStore",
            "new_code",
            "pairing_reply",
        ),
        "pairing",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "CONTROL_COMMANDS",
    "MAX_PENDING",
    "NOT_AUTHORIZED",
    "PENDING_TTL_SECONDS",
    "AccessControl",
    "AccessDenied",
    "AccessRequest",
    "Admit",
    "ApproveCommand",
    "ApproveRefused",
    "ChannelPolicy",
    "ChatType",
    "Command",
    "Decision",
    "Deny",
    "PairingChallenge",
    "PairingRequest",
    "PairingRequired",
    "PairingStore",
    "approval_prompt",
    "approve_body",
    "chat_approvals_enabled",
    "config_checks",
    "decide",
    "detect_command",
    "is_approver",
    "new_code",
    "normalize_e164",
    "normalize_entry",
    "normalize_mention_text",
    "normalize_sender",
    "pairing_reply",
    "parse_approve",
    "parse_command",
    "unsafe_reason",
]
