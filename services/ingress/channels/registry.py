"""The channels ingress knows, and `ChannelHost`, which runs them: an adapter per configured and
enabled account (`channels.<ch>` / `channels.<ch>.accounts.<id>`), their webhook listeners, and
one CM_OUTBOUND delivery per channel that has accounts. Which accounts run, and how they connect,
is read when ingress starts (a change needs an ingress restart); reply settings follow reloads
(see the adapters)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from clawmesh.bus import ServiceContext
from clawmesh.channels.accounts import AccountSettings, channel_accounts
from clawmesh.channels.discord import resolve_token as resolve_discord
from clawmesh.channels.slack import resolve_credentials as resolve_slack
from clawmesh.channels.telegram import resolve_token
from clawmesh.channels.whatsapp import resolve_credentials as resolve_whatsapp
from clawmesh.config import ConfigError
from clawmesh.errors import best_effort
from clawmesh.httpserver import EmbeddedHTTPServer

from ..turns import TurnClient
from .base import ChannelAdapter
from .delivery import OutboundDelivery
from .inbound import ChannelInbound
from .slack import SlackAdapter
from .telegram import TelegramAdapter
from .whatsapp import WhatsAppAdapter

__all__ = ["CHANNELS", "AdapterFactory", "ChannelHost"]

log = logging.getLogger("clawmesh.ingress.channels")

AdapterFactory = Callable[[ServiceContext, AccountSettings, ChannelInbound], ChannelAdapter | None]


def _telegram(
    ctx: ServiceContext, account: AccountSettings, inbound: ChannelInbound
) -> ChannelAdapter | None:
    token = resolve_token(account.settings, account.account_id, ctx.holder.current.env, account.path)
    if token is None:
        log.warning(
            "telegram %s: no bot token (%s.botToken, .tokenFile, or TELEGRAM_BOT_TOKEN for the default "
            "account); not started",
            account.account_id,
            account.path,
        )
        return None
    return TelegramAdapter(ctx, account, token, inbound)


def _slack(ctx: ServiceContext, account: AccountSettings, inbound: ChannelInbound) -> ChannelAdapter | None:
    creds = resolve_slack(account.settings, account.account_id, ctx.holder.current.env, account.path)
    if creds is None:
        log.warning(
            "slack %s: no bot token (%s.botToken, or SLACK_BOT_TOKEN for the default account); not started",
            account.account_id,
            account.path,
        )
        return None
    return SlackAdapter(ctx, account, creds, inbound)


def _whatsapp(
    ctx: ServiceContext, account: AccountSettings, inbound: ChannelInbound
) -> ChannelAdapter | None:
    creds = resolve_whatsapp(account.settings, account.account_id, ctx.holder.current.env, account.path)
    if creds is None:
        log.warning(
            "whatsapp %s: no %s.phoneNumberId (clawmesh serves the Cloud API; OpenClaw's WhatsApp Web "
            "linking is not implemented); not started",
            account.account_id,
            account.path,
        )
        return None
    return WhatsAppAdapter(ctx, account, creds, inbound)


def _discord(ctx: ServiceContext, account: AccountSettings, inbound: ChannelInbound) -> ChannelAdapter | None:
    token = resolve_discord(account.settings, account.account_id, ctx.holder.current.env, account.path)
    if token is None:
        log.warning(
            "discord %s: no bot token (%s.token, or DISCORD_BOT_TOKEN for the default account); not started",
            account.account_id,
            account.path,
        )
        return None
    # imported here: the WebSocket client is loaded only by an ingress that runs a Discord account
    from .discord import DiscordAdapter

    return DiscordAdapter(ctx, account, token, inbound)


# Each platform: a factory per account (None: the account cannot run, said why).
CHANNELS: dict[str, AdapterFactory] = {
    "telegram": _telegram,
    "slack": _slack,
    "whatsapp": _whatsapp,
    "discord": _discord,
}


class ChannelHost:
    """Every channel adapter of one ingress instance."""

    def __init__(self, ctx: ServiceContext, turns: TurnClient, app: Starlette | None = None) -> None:
        self.ctx = ctx
        self.app = app  # ingress's own HTTP app: routes without a listener of their own go there
        self.inbound = ChannelInbound(ctx, turns)
        self.adapters: dict[str, dict[str, ChannelAdapter]] = {}
        self.deliveries: list[OutboundDelivery] = []
        self.listeners: dict[tuple[str, int], EmbeddedHTTPServer] = {}

    def _build(self) -> None:
        channels = self.ctx.holder.current.document.channels
        for channel, factory in CHANNELS.items():
            built: dict[str, ChannelAdapter] = {}
            for account in channel_accounts(channels, channel):
                if not account.enabled:
                    continue
                try:
                    adapter = factory(self.ctx, account, self.inbound)
                except ConfigError as exc:  # one account's bad setting must not stop the others
                    log.error("%s %s: not started: %s", channel, account.account_id, exc)
                    continue
                if adapter is not None:
                    built[account.account_id] = adapter
            if built:
                self.adapters[channel] = built
                self.deliveries.append(OutboundDelivery(self.ctx, channel, built))

    async def start(self) -> None:
        self._build()
        routes: dict[tuple[str, int], list[Route]] = defaultdict(list)
        for adapters in self.adapters.values():
            for adapter in adapters.values():
                for hook in adapter.webhook_routes():
                    route = Route(hook.path, hook.handler, methods=list(hook.methods))
                    if hook.host is None or hook.port is None:
                        if self.app is None:
                            log.error("channel webhook %s: no ingress HTTP server to serve it on", hook.path)
                            continue
                        taken = {getattr(r, "path", None) for r in self.app.router.routes}
                        if hook.path in taken:
                            # another account's path, or the API's own: one handler per path, or
                            # the other's requests would be checked against the wrong secret
                            log.error(
                                "%s %s: webhook path %s is already served on ingress's HTTP server; "
                                "give this account its own webhookPath. Not served",
                                adapter.channel,
                                adapter.account.account_id,
                                hook.path,
                            )
                            continue
                        self.app.router.routes.append(route)
                    else:
                        routes[(hook.host, hook.port)].append(route)
        for (host, port), rs in routes.items():
            server = EmbeddedHTTPServer(Starlette(routes=rs), host, port)
            try:
                await server.start()
            except OSError as exc:  # the port is taken (another replica on this host): the others serve
                log.error(
                    "channel webhooks: cannot listen on %s:%d (%s); not served by this ingress",
                    host,
                    port,
                    exc,
                )
                continue
            self.listeners[(host, port)] = server
            log.info(
                "channel webhooks listening on %s:%d (%s)", host, server.port, ", ".join(r.path for r in rs)
            )
        for adapters in self.adapters.values():
            for adapter in adapters.values():
                await adapter.start()
        for delivery in self.deliveries:
            await delivery.start()

    async def stop(self, timeout: float) -> None:
        """Stop taking updates first, then let replies being sent finish."""
        for server in self.listeners.values():
            await server.stop()
        for adapters in self.adapters.values():
            for adapter in adapters.values():
                with best_effort(self.ctx.counters, "channel_stop", log=log):
                    await adapter.stop_inbound()
        for delivery in self.deliveries:
            with best_effort(self.ctx.counters, "delivery_stop", log=log):
                await delivery.stop(timeout)
        for adapters in self.adapters.values():
            for adapter in adapters.values():
                with best_effort(self.ctx.counters, "channel_stop", log=log):
                    await adapter.stop()

    def webhook_port(self, host: str, port: int) -> int:
        """The bound port of the webhook listener configured as `host`:`port` (0: any free port)."""
        return self.listeners[(host, port)].port

    def status(self) -> dict[str, Any]:
        return {
            "accounts": [a.status() for adapters in self.adapters.values() for a in adapters.values()],
            "deliveries": [d.status() for d in self.deliveries],
            "access": dict(self.inbound.access.counters),
        }
