"""ingress: the HTTP API and the chat channels in front of the bus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.applications import Starlette

from clawmesh.bus import ServiceContext
from clawmesh.config import GatewayRateLimit
from clawmesh.gateway import bind_host, gateway_token, http_port, is_loopback, is_placeholder_token
from clawmesh.httpserver import EmbeddedHTTPServer

from .a2a_api import A2AAPI
from .agent_protocol import AgentProtocolHost
from .api import ClawmeshAPI
from .channels import ChannelHost
from .gateway_link import GatewayLink
from .hooks_api import HooksAPI
from .http import EXCEPTION_HANDLERS, RequestGuard, body_limit
from .openai_api import OpenAIAPI
from .openresponses_api import ResponsesAPI
from .security import AuthGate
from .tools_api import ToolsAPI
from .turns import TurnClient
from .waiters import Waiters

__all__ = ["Ingress", "IngressOptions", "IngressRefused"]

log = logging.getLogger("clawmesh.ingress")


class IngressRefused(RuntimeError):
    """A configuration the ingress will not serve (e.g. a public bind without auth)."""


@dataclass(frozen=True)
class IngressOptions:
    """Settings of one ingress instance that come from its command line, not the config."""

    port: int | None = None  # `--port`; None: gateway.port (or 18789); 0: any free port (tests)
    # the embedded nats-server's leaf links (`clawmesh up --federate`), for `clawmesh status`
    leaf_status: Callable[[], dict[str, Any]] | None = None


class Ingress:
    """The ingress service. It only composes: the reply subject's `Waiters`, the `TurnClient`
    that submits turns and follows them, the `RequestGuard` (auth, body limit, common errors)
    and the API surfaces (clawmesh API, OpenAI-compatible API) on one embedded HTTP server."""

    name: ClassVar[str] = "ingress"

    def __init__(self, ctx: ServiceContext, options: IngressOptions | None = None) -> None:
        options = options or IngressOptions()
        self.ctx = ctx
        config = ctx.holder.current
        self.host = bind_host(config)
        self.token = gateway_token(config, create=True)
        if self.token is None and not is_loopback(self.host):
            raise IngressRefused(
                f"refusing to serve on {self.host} without authentication: set gateway.auth.token "
                "(or CLAWMESH_GATEWAY_TOKEN), or bind to loopback"
            )
        if self.token is not None and is_placeholder_token(self.token) and not is_loopback(self.host):
            raise IngressRefused(
                f"refusing to serve on {self.host} with an example API token (from docs or an old default): anyone who "
                "read the docs knows it; set your own gateway.auth.token (or CLAWMESH_GATEWAY_TOKEN), "
                "or bind to loopback"
            )
        self.ready = False
        self.waiters = Waiters()
        self.reply_subject = ctx.subjects.reply(ctx.instance)
        self.turns = TurnClient(ctx, self.waiters, self.reply_subject)
        # every agent as a Synadia Agent Protocol agent on NATS (docs/interop.md)
        self.agent_protocol = AgentProtocolHost(ctx, self.turns)
        self.gateway_link = GatewayLink(ctx, self.turns, leaf_status=options.leaf_status)
        guard = RequestGuard(
            AuthGate(lambda: self.token, self._rate_limit, self._trusted_proxies),
            lambda: body_limit(ctx.holder.current),
        )
        clawmesh_api = ClawmeshAPI(ctx, self.turns, guard, lambda: self.ready)
        openai_api = OpenAIAPI(ctx, self.turns, guard)
        responses_api = ResponsesAPI(openai_api)
        tools_api = ToolsAPI(ctx, guard)
        a2a_api = A2AAPI(ctx, self.turns, guard, lambda: self.token is not None)
        # first: OpenClaw serves its hook paths ahead of the rest of the gateway's routes
        hooks_api = HooksAPI(ctx, self.turns, self._trusted_proxies)
        app = Starlette(
            routes=[
                *hooks_api.routes(),
                *clawmesh_api.routes(),
                *openai_api.routes(),
                *responses_api.routes(),
                *tools_api.routes(),
                *a2a_api.routes(),
            ],
            exception_handlers=EXCEPTION_HANDLERS,
        )
        self.http = EmbeddedHTTPServer(app, self.host, http_port(config, options.port))
        # chat platforms: an adapter per configured account, and the delivery of their replies
        self.channels = ChannelHost(ctx, self.turns, app)

    def _rate_limit(self) -> GatewayRateLimit:
        gw = self.ctx.holder.current.document.gateway
        return gw.auth.rate_limit if gw and gw.auth and gw.auth.rate_limit else GatewayRateLimit()

    def _trusted_proxies(self) -> list[str]:
        gw = self.ctx.holder.current.document.gateway
        return gw.trusted_proxies or [] if gw else []

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.http.port}"

    async def start(self) -> None:
        self._sub = await self.ctx.nc.subscribe(self.reply_subject, cb=self.waiters.on_message)
        await self.gateway_link.start()
        await self.agent_protocol.start()
        await self.ctx.nc.flush()
        await self.http.start()
        await self.channels.start()
        self.ready = True
        log.info("ingress listening on %s", self.url)

    async def stop(self, timeout: float) -> None:
        self.ready = False
        await self.channels.stop(timeout)
        await self.http.stop()
        await self.agent_protocol.stop()
        await self.gateway_link.stop()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"url": self.url, "waiting": len(self.waiters)}
        if self.channels.adapters:
            status["channels"] = self.channels.status()
        status.update(self.gateway_link.status())
        return status
