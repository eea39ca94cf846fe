"""`clawmesh pairing list|approve`: DM pairing requests (OpenClaw's `openclaw pairing`), read and
approved in the `pairing` KV bucket over NATS with the CLI's own (admin) credentials."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from ..config import Config
from ..wire import Subjects
from ._common import console, fail, load, print_json

app = typer.Typer(help="Secure DM pairing: approve senders who asked for access.", no_args_is_help=True)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
    ),
]
ChannelOpt = Annotated[
    str | None, typer.Option("--channel", help="Channel id (instead of the positional one).")
]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id (for multi-account channels).")]

_ID_LABELS = {"telegram": "Telegram user id", "whatsapp": "Phone number"}
# OpenClaw's PAIRING_APPROVED_MESSAGE, with clawmesh's name
APPROVED_MESSAGE = "✅ clawmesh access approved. Send a message to start chatting."


def _channels(config: Config) -> list[str]:
    return sorted(k for k in (config.document.channels or {}) if k != "defaults")


def _channel(config: Config, positional: str | None, option: str | None) -> str:
    configured = _channels(config)
    if option and positional and option.strip().lower() != positional.strip().lower():
        fail(
            f'conflicting pairing channels: "{option}" and "{positional}"; pass the channel either '
            "positionally or with --channel",
            2,
        )
    raw = option or positional or (configured[0] if len(configured) == 1 else "")
    if not raw:
        if not configured:
            fail("no chat channels are configured (channels.<id> in the config)")
        fail(f"channel required (expected one of: {', '.join(configured)})", 2)
    channel = raw.strip().lower()
    if channel not in configured:
        fail(f"channel '{channel}' is not configured (configured: {', '.join(configured) or 'none'})", 2)
    return channel


def _account(value: str | None) -> str | None:
    if value is not None and not value.strip():
        fail("--account must not be blank", 2)
    return value.strip() if value is not None else None


async def _notify(config: Config, url: str | None, channel: str, request: Any) -> None:
    """The approval message, stored in CM_OUTBOUND for the account's adapter to send (once: the
    message id is the approval's)."""
    from ..wire import OutboundMessage, Peer, encode_json
    from ._remote import nats_client

    subjects = Subjects(config.subject_prefix)
    # a turn id like ingress's (hex: delivery keys its KV record by it), one per approval
    turn_id = uuid.uuid5(
        uuid.NAMESPACE_URL, f"clawmesh:pairing:{channel}:{request.account}:{request.id}:{request.code}"
    )
    message = OutboundMessage(
        turn_id=turn_id.hex,
        agent_id="",
        session_key="",
        channel=channel,
        account_id=request.account,
        text=APPROVED_MESSAGE,
        peer=Peer(kind="direct", id=request.id),
    )
    data, headers = encode_json(message)
    headers["Nats-Msg-Id"] = f"out:{message.turn_id}"
    async with nats_client(config, url) as nc:
        await nc.jetstream().publish(subjects.outbound(channel, request.account), data, headers=headers)


async def _with_store(config: Config, url: str | None, action: Any) -> Any:
    from nats.js.errors import BucketNotFoundError

    from ..channels import PairingStore
    from ._remote import nats_client

    async with nats_client(config, url) as nc:
        try:
            kv = await nc.jetstream().key_value(Subjects(config.subject_prefix).bucket("pairing"))
        except BucketNotFoundError:
            fail("no pairing requests yet: the gateway has not created its pairing bucket (is it running?)")
        return await action(PairingStore(kv))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _request_json(channel: str, r: Any) -> dict[str, Any]:
    """OpenClaw's request shape (`{id, code, createdAt, lastSeenAt, meta}`, times as ISO 8601)."""
    return {
        "id": r.id,
        "code": r.code,
        "createdAt": _iso(r.created_at),
        "lastSeenAt": _iso(r.last_seen_at),
        "expiresAt": _iso(r.expires_at()),
        "meta": {**r.meta, "accountId": r.account},
    }


@app.command("list")
def pairing_list(
    ctx: typer.Context,
    channel_arg: Annotated[str | None, typer.Argument(metavar="[CHANNEL]", help="Channel id.")] = None,
    channel: ChannelOpt = None,
    account: AccountOpt = None,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Pending pairing requests of one channel (every account, or --account)."""
    config = load(ctx)
    name = _channel(config, channel_arg, channel)
    acct = _account(account)

    async def run(store: Any) -> list[Any]:
        accounts = [acct] if acct is not None else await store.accounts(name)
        found: list[Any] = []
        for a in accounts:
            found.extend(await store.pending(name, a))
        return sorted(found, key=lambda r: r.created_at)

    requests = asyncio.run(_with_store(config, nats_url, run))
    if as_json:
        print_json({"channel": name, "requests": [_request_json(name, r) for r in requests]})
        return
    if not requests:
        console.print(f"No pending {name} pairing requests.", markup=False)
        return
    console.print(f"Pairing requests ({len(requests)})", markup=False)
    table = Table(
        "Code",
        _ID_LABELS.get(name, "Sender id"),
        "Account",
        "Meta",
        "Requested",
        "Expires",
        box=None,
        header_style="bold",
    )
    for r in requests:
        meta = ", ".join(f"{k}={v}" for k, v in sorted(r.meta.items()))
        table.add_row(r.code, r.id, r.account, meta, _iso(r.created_at), _iso(r.expires_at()))
    console.print(table)


@app.command("approve")
def pairing_approve(
    ctx: typer.Context,
    code_or_channel: Annotated[
        str, typer.Argument(metavar="CHANNEL|CODE", help="The channel, then the code (or the code alone).")
    ],
    code: Annotated[str | None, typer.Argument(metavar="[CODE]")] = None,
    channel: ChannelOpt = None,
    account: AccountOpt = None,
    notify: Annotated[
        bool,
        typer.Option("--notify", help="Tell the sender on the same channel (a reply through CM_OUTBOUND)."),
    ] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Approve a pairing code: its sender may DM the bot from now on (DMs only, not groups)."""
    config = load(ctx)
    if channel and code is not None:
        fail("too many arguments; use: clawmesh pairing approve --channel <channel> <code>", 2)
    positional_channel = code_or_channel if code is not None else None
    the_code = code if code is not None else code_or_channel
    name = _channel(config, positional_channel, channel)
    acct = _account(account)

    async def run(store: Any) -> Any:
        found = await store.approve(name, the_code, acct)
        if found is not None and notify:
            await _notify(config, nats_url, name, found)
        return found

    approved = asyncio.run(_with_store(config, nats_url, run))
    if approved is None:
        fail(
            f'no pending pairing request found for code "{the_code}"; run clawmesh pairing list {name} '
            "to list pending requests"
        )
    console.print(f"Approved {name} sender {approved.id} (account {approved.account}).", markup=False)
    if notify:
        console.print("Notification queued for the sender.", markup=False)
