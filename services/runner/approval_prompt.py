"""An exec approval asked in the chat the turn came from (OpenClaw's same-chat approvals).

When a node-agent holds a command for approval and the turn came from a chat platform whose
account lists `execApprovals.approvers` (or sets `enabled: true`), the prompt — the command, where
it runs, when the request expires, and the `/approve <id> <decision>` lines to answer with — is
sent into that chat through CM_OUTBOUND, like a reply, once per approval id. An approver's
`/approve` is handled by ingress (`ChannelInbound`), not by this turn, which is waiting for it.
"""

from __future__ import annotations

import time
import uuid

from clawmesh.bus import ServiceContext, inject
from clawmesh.channels import approval_prompt, chat_approvals_enabled
from clawmesh.channels.accounts import channel_accounts
from clawmesh.config import Config
from clawmesh.wire import ExecApprovalNotice, OutboundMessage, TurnRequest, encode_json

__all__ = ["ask_in_chat"]


async def ask_in_chat(
    ctx: ServiceContext, config: Config, turn: TurnRequest, notice: ExecApprovalNotice, node_id: str
) -> bool:
    """Send the prompt for `notice` (phase `requested`) to the turn's chat; False when that chat
    is not asked (not a chat platform, or its account does not take approvals in the chat)."""
    channel, account = turn.route.channel, turn.route.account_id
    settings = next(
        (a.settings for a in channel_accounts(config.document.channels, channel) if a.account_id == account),
        None,
    )
    if settings is None or not chat_approvals_enabled(settings):
        return False
    inbound = turn.inbound
    key = f"approval:{notice.approval_id}"
    prompt = OutboundMessage(
        # its own id: the delivery consumer sends each id once, and this is not the turn's reply
        turn_id=uuid.uuid5(uuid.NAMESPACE_URL, f"clawmesh:{key}").hex,
        agent_id=turn.agent_id,
        session_key=turn.session_key,
        channel=channel,
        account_id=account,
        text=approval_prompt(
            approval_id=notice.approval_id,
            command=notice.command,
            host=notice.host,
            node=node_id,
            cwd=notice.cwd or None,
            expires_at=notice.expires_at,
            now=time.time(),
            allow_always=notice.ask != "always",
        ),
        peer=inbound.peer,
        thread_id=inbound.thread_id,
        reply_to=inbound.message_id,
    )
    data, headers = encode_json(prompt)
    headers["Nats-Msg-Id"] = key
    await ctx.publish(ctx.subjects.outbound(channel, account), data, inject(headers))
    return True
