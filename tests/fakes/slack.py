"""A fake Slack (Web API + Events API sender) for offline tests (channel-protocols.md §2, §6).

    async with FakeSlack(signing_secret="s") as slack:     # 127.0.0.1, a free port
        app = slack.add_app("xoxb-1", team_id="T1", bot_user_id="UBOT")
        ...  # point `channels.slack.apiBaseUrl` at slack.api_base, the Request URL at the gateway
        resp = await slack.deliver(url, slack.message_event(app, channel="C1", user="U7", text="hi"))
        sent = await slack.wait_sent(app, lambda m: m.channel == "C1")

Web API as Slack answers it: `POST /api/<method>`, `Authorization: Bearer <token>`, JSON or form
parameters; logical errors are HTTP 200 `{"ok": false, "error": "<code>"}` (`not_authed`,
`invalid_auth`, `channel_not_found`, `no_text`, `msg_too_long` above 40,000 characters,
`message_not_found`); `auth.test`, `chat.postMessage` (a `ts` per message, `thread_ts` kept),
`chat.update`; scripted failures (`fail_next`: a 429 with `Retry-After` and
`{"ok":false,"error":"ratelimited"}`, or any error code). Events: `deliver` signs an envelope
(v0 HMAC-SHA256 of `v0:<ts>:<raw body>`) and POSTs it as Slack does, optionally with a wrong
signature, a stale timestamp or `X-Slack-Retry-Num`/`X-Slack-Retry-Reason` of a retry.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clawmesh.channels.slack import sign
from clawmesh.httpserver import EmbeddedHTTPServer

__all__ = ["App", "FakeSlack", "Posted"]

MAX_TEXT = 40_000


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    edits: list[str] = field(default_factory=list)


@dataclass
class App:
    token: str
    team_id: str
    bot_user_id: str
    bot_id: str
    name: str
    sent: list[Posted] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    failures: dict[str, list[tuple[int, str, float | None]]] = field(default_factory=dict)


class FakeSlack:
    def __init__(self, *, signing_secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.signing_secret = signing_secret
        self.apps: dict[str, App] = {}
        self.channels: set[str] = set()
        self._ts = itertools.count(1)
        self._events = itertools.count(1)
        self._changed = asyncio.Condition()
        self._http = EmbeddedHTTPServer(
            Starlette(routes=[Route("/api/{method}", self._handle, methods=["GET", "POST"])]), host, port
        )

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._http.port}/api"

    async def __aenter__(self) -> Self:
        await self._http.start()
        self._client = httpx.AsyncClient(timeout=10, trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()
        await self._http.stop()

    def add_app(
        self, token: str, *, team_id: str = "T111", bot_user_id: str = "UBOT", name: str = "clawbot"
    ) -> App:
        app = App(
            token=token, team_id=team_id, bot_user_id=bot_user_id, bot_id="B" + bot_user_id[1:], name=name
        )
        self.apps[token] = app
        return app

    def fail_next(
        self, app: App, method: str, status: int, error: str, retry_after: float | None = None
    ) -> None:
        app.failures.setdefault(method, []).append((status, error, retry_after))

    # --- Web API ----------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        method = request.path_params["method"]
        auth = request.headers.get("authorization", "")
        raw = await request.body()
        params: dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"ok": False, "error": "invalid_json"})
        else:
            params = dict(parse_qsl(raw.decode()))
        token = (
            auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token", "")
        )
        if not token:
            return JSONResponse({"ok": False, "error": "not_authed"})
        app = self.apps.get(token)
        if app is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        app.calls.append(method)
        scripted = app.failures.get(method)
        if scripted:
            status, error, retry_after = scripted.pop(0)
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)
        if method == "auth.test":
            return JSONResponse(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake",
                    "user": app.name,
                    "team_id": app.team_id,
                    "user_id": app.bot_user_id,
                    "bot_id": app.bot_id,
                    "is_enterprise_install": False,
                }
            )
        if method == "chat.postMessage":
            return await self._post(app, params)
        if method == "chat.update":
            return await self._update(app, params)
        return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)

    async def _post(self, app: App, params: dict[str, Any]) -> Response:
        channel = str(params.get("channel") or "")
        text = params.get("text")
        if not channel or (channel not in self.channels and not channel.startswith("U")):
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not text:
            return JSONResponse({"ok": False, "error": "no_text"})
        if len(text) > MAX_TEXT:
            return JSONResponse({"ok": False, "error": "msg_too_long"})
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        thread = params.get("thread_ts")
        posted = Posted(channel=channel, ts=ts, text=text, thread_ts=str(thread) if thread else None)
        async with self._changed:
            app.sent.append(posted)
            self._changed.notify_all()
        return JSONResponse(
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": text, "user": app.bot_user_id, "ts": ts},
            }
        )

    async def _update(self, app: App, params: dict[str, Any]) -> Response:
        found = next(
            (p for p in app.sent if p.channel == params.get("channel") and p.ts == params.get("ts")), None
        )
        if found is None:
            return JSONResponse({"ok": False, "error": "message_not_found"})
        if not params.get("text"):
            return JSONResponse({"ok": False, "error": "no_text"})
        async with self._changed:
            found.edits.append(found.text)
            found.text = str(params["text"])
            self._changed.notify_all()
        return JSONResponse({"ok": True, "channel": found.channel, "ts": found.ts, "text": found.text})

    async def wait_sent(
        self, app: App, predicate: Callable[[Posted], bool], *, timeout: float = 30.0, count: int = 1
    ) -> list[Posted]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while True:
                found = [p for p in app.sent if predicate(p)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no {count} matching messages; sent: {app.sent!r}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    pass

    # --- Events API -------------------------------------------------------------------------

    def event(self, app: App, event: dict[str, Any]) -> dict[str, Any]:
        """An `event_callback` envelope around `event`."""
        return {
            "token": "legacy-verification-token",
            "team_id": app.team_id,
            "api_app_id": "A111",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._events):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": app.team_id, "user_id": app.bot_user_id, "is_bot": True}],
        }

    def message_event(
        self,
        app: App,
        *,
        channel: str,
        user: str,
        text: str,
        channel_type: str | None = None,
        thread_ts: str | None = None,
        kind: str = "message",
        ts: str | None = None,
    ) -> dict[str, Any]:
        self.channels.add(channel)
        ev: dict[str, Any] = {
            "type": kind,
            "user": user,
            "text": text,
            "ts": ts or f"{int(time.time())}.{next(self._ts):06d}",
            "channel": channel,
            "team": app.team_id,
            "event_ts": ts or "0",
        }
        if kind == "message":
            ev["channel_type"] = channel_type or {"D": "im", "G": "group"}.get(channel[0], "channel")
        if thread_ts:
            ev["thread_ts"] = thread_ts
        return self.event(app, ev)

    async def deliver(
        self,
        url: str,
        envelope: dict[str, Any],
        *,
        retry: int = 0,
        secret: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST `envelope` as Slack does: signed with the signing secret (or `secret`), at
        `timestamp` (now), as retry number `retry` (0: the first attempt)."""
        body = json.dumps(envelope).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature or sign(secret or self.signing_secret, ts, body),
        }
        if retry:
            headers["x-slack-retry-num"] = str(retry)
            headers["x-slack-retry-reason"] = "http_timeout"
        return await self._client.post(url, content=body, headers=headers)
