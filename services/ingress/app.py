"""ingress: the HTTP API in front of the bus (and, later, channel connectors)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from starlette.applications import Starlette

from clawmesh.bus import ServiceContext
from clawmesh.config import GatewayRateLimit
from clawmesh.gateway import bind_host, gateway_token, http_port, is_loopback
from clawmesh.httpserver import EmbeddedHTTPServer

from .api import ClawmeshAPI
from .http import EXCEPTION_HANDLERS, RequestGuard, body_limit
from .openai_api import OpenAIAPI
from .security import AuthGate
from .turns import TurnClient
from .waiters import Waiters

__all__ = ["Ingress", "IngressRefused"]

log = logging.getLogger("clawmesh.ingress")


class IngressRefused(RuntimeError):
    """A configuration the ingress will not serve (e.g. a public bind without auth)."""


class Ingress:
    """The ingress service. It only composes: the reply subject's `Waiters`, the `TurnClient`
    that submits turns and follows them, the `RequestGuard` (auth, body limit, common errors)
    and the API surfaces (clawmesh API, OpenAI-compatible API) on one embedded HTTP server."""

    name: ClassVar[str] = "ingress"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        config = ctx.holder.current
        # ctx.options: `clawmesh up --port N` / tests (port 0 = any free port)
        self.host = ctx.options.get("host") or bind_host(config)
        self.token = gateway_token(config, create=True)
        if self.token is None and not is_loopback(self.host):
            raise IngressRefused(
                f"refusing to serve on {self.host} without authentication: set gateway.auth.token "
                "(or CLAWMESH_GATEWAY_TOKEN), or bind to loopback"
            )
        self.ready = False
        self.waiters = Waiters()
        self.reply_subject = f"{ctx.subjects.prefix}.reply.{ctx.instance}"
        self.turns = TurnClient(ctx, self.waiters, self.reply_subject)
        guard = RequestGuard(
            AuthGate(lambda: self.token, self._rate_limit, self._trusted_proxies),
            lambda: body_limit(ctx.holder.current),
        )
        clawmesh_api = ClawmeshAPI(ctx, self.turns, guard, lambda: self.ready)
        openai_api = OpenAIAPI(ctx, self.turns, guard)
        app = Starlette(
            routes=[*clawmesh_api.routes(), *openai_api.routes()], exception_handlers=EXCEPTION_HANDLERS
        )
        self.http = EmbeddedHTTPServer(app, self.host, http_port(config, ctx.options.get("port")))

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
        await self.ctx.nc.flush()
        await self.http.start()
        self.ready = True
        log.info("ingress listening on %s", self.url)

    async def stop(self, timeout: float) -> None:
        self.ready = False
        await self.http.stop()

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "waiting": len(self.waiters)}
