"""`runnerType: opencode`: an `opencode serve` server (`mode: remote`), or one this runner
starts and keeps (`mode: local`, on 127.0.0.1:`port`, in `workingDirectory`).

One OpenCode session per clawmesh session (created on the first turn, its id kept with the
session). A prompt goes out with `prompt_async` and the reply is read from the server's event
stream (`GET /event`), opened before the prompt so nothing is missed: text deltas of the
assistant's text parts are forwarded, `session.idle` (or `session.status` idle) ends the turn.
OpenCode retries an overloaded model forever, so a second retry aborts the session's turn and
fails over. Slash commands `/init`, `/undo`, `/redo`, `/share` map to the server's endpoints as
OpenCode's own TUI maps them; `/help` is answered here (the server has no help endpoint). A permission prompt ends the turn
(aborted) with a clear error: nobody in a chat can answer it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any, Final

import httpx
import msgspec

from clawmesh.config import ConfigError, OpenCodeSettings, secret_value

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn, failover_worthy_status
from ._sse import sse_events

__all__ = ["HELP_TEXT", "OpenCodeBackend"]

log = logging.getLogger("clawmesh.runner.opencode")

HELP_TEXT: Final = (
    "OpenCode commands:\n"
    "/init — create or update AGENTS.md for the project\n"
    "/undo — revert the last message and its file changes\n"
    "/redo — restore what /undo reverted\n"
    "/share — share this session and show its link\n"
    "/help — this list\n"
    "Anything else is sent to OpenCode as a prompt."
)
_START_TIMEOUT: Final = 60.0
_ABORT_TIMEOUT: Final = 5.0
_MAX_RETRIES_SEEN: Final = 2  # OpenCode's own retries of the model before we give up on it


def _json(data: bytes | str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None


class _Server:
    """One OpenCode server: its address, credentials and (mode local) the process we started."""

    def __init__(self, settings: OpenCodeSettings, password: str | None) -> None:
        self.settings = settings
        self.headers: dict[str, str] = {}
        if password:
            basic = base64.b64encode(f"opencode:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        self.process: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self.ready = False


class OpenCodeBackend:
    kind = "opencode"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(30.0, read=None), trust_env=False
        )
        self._servers: dict[tuple[str, str], _Server] = {}

    async def aclose(self) -> None:
        for server in self._servers.values():
            if server.process is not None and server.process.returncode is None:
                server.process.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.process.wait(), 10)
                if server.process.returncode is None:
                    server.process.kill()
        self._servers.clear()
        await self._client.aclose()

    # --- the server ---------------------------------------------------------------------
    async def _server(self, turn: ProxyTurn) -> _Server:
        settings = turn.settings
        assert isinstance(settings, OpenCodeSettings)
        try:
            password = secret_value(settings.password, turn.env, settings.password_path)
        except ConfigError as exc:
            raise BackendError(str(exc.problems[0]), reason="config", failover=False) from None
        key = (settings.base_url, password or "")
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = _Server(settings, password)
        if not server.ready:
            async with server.lock:
                if not server.ready:
                    await self._ensure_up(server, turn)
                    server.ready = True
        return server

    async def _healthy(self, server: _Server) -> bool:
        try:
            resp = await self._client.get(
                f"{server.settings.base_url}/global/health", headers=server.headers, timeout=5
            )
        except httpx.TransportError:
            return False
        if resp.status_code == 401:
            raise BackendError(
                f"the OpenCode server at {server.settings.base_url} refused the password",
                reason="auth",
                failover=False,
                hint="check the agent's opencode.password (the server's OPENCODE_SERVER_PASSWORD)",
            )
        return resp.status_code == 200

    async def _ensure_up(self, server: _Server, turn: ProxyTurn) -> None:
        settings = server.settings
        if await self._healthy(server):
            return
        if settings.mode == "remote":
            raise BackendError(
                f"the OpenCode server at {settings.base_url} is unreachable",
                reason="connection",
                failover=True,
            )
        if server.process is not None and server.process.returncode is None:
            server.process.kill()
        env = dict(turn.env)
        password = secret_value(settings.password, turn.env, settings.password_path)
        if password:
            env["OPENCODE_SERVER_PASSWORD"] = password
        settings.working_directory.mkdir(parents=True, exist_ok=True)
        try:
            server.process = await asyncio.create_subprocess_exec(
                settings.command,
                "serve",
                "--port",
                str(settings.port),
                "--hostname",
                "127.0.0.1",
                cwd=settings.working_directory,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of the gateway's terminal is ours to pass on
            )
        except OSError as exc:
            raise BackendError(
                f"cannot start OpenCode ({settings.command} serve): {exc}",
                reason="unavailable",
                failover=True,
                hint="install it (npm install -g opencode-ai) or set the agent's opencode.command",
            ) from None
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            if server.process.returncode is not None:
                raise BackendError(
                    f"OpenCode exited with status {server.process.returncode} while starting on port {settings.port}",
                    reason="unavailable",
                    failover=True,
                )
            if await self._healthy(server):
                log.info(
                    "opencode: started %s serve on %s (pid %s)",
                    settings.command,
                    settings.base_url,
                    server.process.pid,
                )
                return
            await asyncio.sleep(0.2)  # polling the health endpoint: the server has no ready signal
        raise BackendError(
            f"OpenCode did not answer on {settings.base_url} within {_START_TIMEOUT:.0f}s",
            reason="timeout",
            failover=True,
        )

    async def _call(
        self, server: _Server, method: str, path: str, body: Any = None, *, directory: str
    ) -> Any:
        try:
            resp = await self._client.request(
                method,
                f"{server.settings.base_url}{path}",
                params={"directory": directory},
                headers=server.headers,
                content=msgspec.json.encode(body) if body is not None else None,
            )
        except httpx.TransportError as exc:
            server.ready = False
            raise BackendError(
                f"the OpenCode server at {server.settings.base_url} is unreachable: {exc!r}",
                reason="connection",
                failover=True,
            ) from None
        if resp.status_code >= 400:
            doc = _json(resp.content)
            detail = (
                doc.get("data", {}).get("message")
                if isinstance(doc, dict) and isinstance(doc.get("data"), dict)
                else None
            )
            if resp.status_code == 401:
                reason = "auth"
            elif resp.status_code == 404 and isinstance(doc, dict) and doc.get("name") == "NotFoundError":
                reason = "session_expired"  # the server no longer has the session (new state dir)
            else:
                reason = "server" if failover_worthy_status(resp.status_code) else "opencode_error"
            raise BackendError(
                f"OpenCode {method} {path.split('?')[0]} answered HTTP {resp.status_code}: {detail or resp.text[:200]}",
                reason=reason,
                failover=False,
            )
        return _json(resp.content) if resp.content else None

    # --- a turn -------------------------------------------------------------------------
    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, OpenCodeSettings)
        if turn.text.strip().partition(" ")[0] == "/help":
            await on_delta(HELP_TEXT)
            return ProxyResult(text=HELP_TEXT, remote_session=turn.remote_session, model="opencode")
        server = await self._server(turn)
        try:
            return await self._turn(server, turn, turn.remote_session, on_delta)
        except BackendError as exc:
            if exc.reason != "session_expired" or turn.remote_session is None:
                raise
            log.info("opencode: session %s is gone; starting a new one", turn.remote_session)
            return await self._turn(server, turn, None, on_delta)

    async def _turn(
        self, server: _Server, turn: ProxyTurn, session_id: str | None, on_delta: OnDelta
    ) -> ProxyResult:
        settings = server.settings
        directory = str(settings.working_directory)
        command, _, arguments = turn.text.strip().partition(" ")
        if session_id is None:
            created = await self._call(
                server,
                "POST",
                "/session",
                {"title": f"clawmesh {turn.session_key}"[:100]},
                directory=directory,
            )
            if not isinstance(created, dict) or not isinstance(created.get("id"), str):
                raise BackendError(
                    f"OpenCode created no session: {created!r}", reason="opencode_error", failover=False
                )
            session_id = created["id"]
        if command in ("/init", "/undo", "/redo", "/share"):
            reply = await self._slash(server, session_id, command, arguments, directory)
            await on_delta(reply)
            return ProxyResult(text=reply, remote_session=session_id, model="opencode")
        return await self._prompt(server, session_id, turn.text, directory, on_delta)

    def _model(self, settings: OpenCodeSettings) -> dict[str, str] | None:
        if not settings.model:
            return None
        provider, _, model = settings.model.partition("/")
        return {"providerID": provider, "modelID": model}

    async def _prompt(
        self, server: _Server, session_id: str, text: str, directory: str, on_delta: OnDelta
    ) -> ProxyResult:
        settings = server.settings
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        model = self._model(settings)
        if model:
            body["model"] = model
        watch = _Watch(session_id, on_delta)
        connected = asyncio.Event()
        events = asyncio.create_task(self._events(server, directory, watch, connected))
        try:
            waiting = asyncio.create_task(connected.wait())
            await asyncio.wait({waiting, events}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if events.done():
                events.result()  # raises what went wrong
            await self._call(server, "POST", f"/session/{session_id}/prompt_async", body, directory=directory)
            await events
        except asyncio.CancelledError:
            events.cancel()
            await self._abort(server, session_id, directory)
            raise
        except BackendError:
            events.cancel()
            if watch.busy:
                await self._abort(server, session_id, directory)
            raise
        return ProxyResult(
            text="".join(watch.parts),
            remote_session=session_id,
            usage=watch.usage,
            model=watch.model or settings.model or "opencode",
            cost_usd=watch.cost,
        )

    async def _events(self, server: _Server, directory: str, watch: _Watch, connected: asyncio.Event) -> None:
        try:
            async with self._client.stream(
                "GET",
                f"{server.settings.base_url}/event",
                params={"directory": directory},
                headers={**server.headers, "Accept": "text/event-stream"},
            ) as resp:
                if resp.status_code != 200:
                    raise BackendError(
                        f"OpenCode's event stream answered HTTP {resp.status_code}",
                        reason="auth" if resp.status_code == 401 else "server",
                        failover=resp.status_code != 401,
                    )
                async for _, data in sse_events(resp.aiter_lines()):
                    event = _json(data)
                    if not isinstance(event, dict):
                        continue
                    if event.get("type") == "server.connected":
                        connected.set()
                        continue
                    if await watch.feed(event):
                        return
        except httpx.TransportError as exc:
            server.ready = False
            raise BackendError(
                f"OpenCode's event stream broke: {exc!r}", reason="connection", failover=True
            ) from None
        raise BackendError("OpenCode's event stream ended mid-turn", reason="connection", failover=True)

    async def _abort(self, server: _Server, session_id: str, directory: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                asyncio.wait_for(
                    self._call(server, "POST", f"/session/{session_id}/abort", directory=directory),
                    _ABORT_TIMEOUT,
                )
            )

    async def _slash(
        self, server: _Server, session_id: str, command: str, arguments: str, directory: str
    ) -> str:
        if command == "/init":
            body: dict[str, Any] = {"command": "init", "arguments": arguments}
            if server.settings.model:
                body["model"] = server.settings.model
            done = await self._call(
                server, "POST", f"/session/{session_id}/command", body, directory=directory
            )
            return _parts_text(done) or "AGENTS.md initialised."
        if command == "/share":
            shared = await self._call(server, "POST", f"/session/{session_id}/share", {}, directory=directory)
            url = (shared or {}).get("share", {}).get("url") if isinstance(shared, dict) else None
            if not url:
                raise BackendError(
                    "OpenCode shared the session but gave no link", reason="opencode_error", failover=False
                )
            return f"Shared: {url}"
        session = await self._call(server, "GET", f"/session/{session_id}", directory=directory)
        messages = await self._call(server, "GET", f"/session/{session_id}/message", directory=directory)
        users = [
            m for m in (messages or []) if isinstance(m, dict) and (m.get("info") or {}).get("role") == "user"
        ]
        boundary = (
            ((session or {}).get("revert") or {}).get("messageID") if isinstance(session, dict) else None
        )
        ids = [str(m["info"]["id"]) for m in users]
        if command == "/undo":
            before = [m for m in users if boundary is None or str(m["info"]["id"]) < boundary]
            if not before:
                return "Nothing to undo."
            target = before[-1]
            await self._call(
                server,
                "POST",
                f"/session/{session_id}/revert",
                {"messageID": target["info"]["id"]},
                directory=directory,
            )
            return f"Undone: {_parts_text(target) or '(message)'}"
        # /redo
        if boundary is None:
            return "Nothing to redo."
        after = [i for i in ids if i > boundary]
        if not after:
            await self._call(server, "POST", f"/session/{session_id}/unrevert", {}, directory=directory)
        else:
            await self._call(
                server, "POST", f"/session/{session_id}/revert", {"messageID": after[0]}, directory=directory
            )
        return "Redone."


def _parts_text(message: Any) -> str:
    """The text parts of a `{info, parts}` answer."""
    if not isinstance(message, dict):
        return ""
    return "".join(
        p.get("text") or ""
        for p in message.get("parts") or ()
        if isinstance(p, dict) and p.get("type") == "text" and not p.get("synthetic")
    )


class _Watch:
    """One turn's view of the event stream (events may repeat: everything is idempotent)."""

    def __init__(self, session_id: str, on_delta: OnDelta) -> None:
        self.session_id = session_id
        self.on_delta = on_delta
        self.roles: dict[str, str] = {}  # messageID → role
        self.part_types: dict[str, str] = {}  # partID → type
        self.sent: dict[str, int] = {}  # partID → characters of it forwarded
        self.parts: list[str] = []
        self.busy = False
        self.retries = 0
        self.usage = (0, 0)
        self.cost: float | None = None
        self.model = ""

    async def _forward(self, part_id: str, text: str) -> None:
        if text:
            self.sent[part_id] = self.sent.get(part_id, 0) + len(text)
            self.parts.append(text)
            await self.on_delta(text)

    async def feed(self, event: dict[str, Any]) -> bool:
        """True when the session's turn is over."""
        kind = event.get("type")
        props = event.get("properties") or {}
        if not isinstance(props, dict):
            return False
        session = (
            props.get("sessionID")
            or (props.get("info") or {}).get("sessionID")
            or (props.get("part") or {}).get("sessionID")
        )
        if session != self.session_id:
            return False
        if kind == "message.updated":
            info = props.get("info") or {}
            self.roles[str(info.get("id"))] = str(info.get("role"))
            if info.get("role") == "assistant":
                self.busy = True
                tokens = info.get("tokens") or {}
                self.usage = (int(tokens.get("input") or 0), int(tokens.get("output") or 0))
                if isinstance(info.get("cost"), int | float):
                    self.cost = float(info["cost"])
                if info.get("providerID") and info.get("modelID"):
                    self.model = f"{info['providerID']}/{info['modelID']}"
                error = info.get("error")
                if isinstance(error, dict):
                    raise _api_error(error)
        elif kind == "message.part.updated":
            part = props.get("part") or {}
            part_id = str(part.get("id"))
            self.part_types[part_id] = str(part.get("type"))
            if part.get("type") == "text" and self.roles.get(str(part.get("messageID"))) == "assistant":
                delta = props.get("delta")
                if isinstance(delta, str):  # servers before 1.2: deltas ride on part updates
                    await self._forward(part_id, delta)
                else:
                    full = part.get("text") or ""
                    await self._forward(part_id, full[self.sent.get(part_id, 0) :])
        elif kind == "message.part.delta":
            part_id = str(props.get("partID"))
            if (
                props.get("field") == "text"
                and self.part_types.get(part_id) == "text"
                and self.roles.get(str(props.get("messageID"))) == "assistant"
            ):
                await self._forward(part_id, str(props.get("delta") or ""))
        elif kind == "session.status":
            status = props.get("status") or {}
            if status.get("type") == "busy":
                self.busy = True
            elif status.get("type") == "retry":
                self.busy = True
                self.retries += 1
                if self.retries >= _MAX_RETRIES_SEEN:
                    raise BackendError(
                        f"OpenCode's model keeps failing: {status.get('message') or 'retrying'}",
                        reason="overloaded",
                        failover=True,
                    )
            elif status.get("type") == "idle" and self.busy:
                return True
        elif kind == "session.idle" and self.busy:
            return True
        elif kind == "session.error":
            raise _api_error(props.get("error") or {})
        elif kind in ("permission.asked", "permission.updated"):
            # nobody in the chat can answer OpenCode's prompt: end the turn now, not at the timeout
            what = props.get("permission") or props.get("type") or props.get("title") or "a tool call"
            raise BackendError(
                f"OpenCode asks for permission ({what}), which clawmesh cannot give from a chat",
                reason="permission",
                failover=False,
                hint="allow it in OpenCode's config (permission: {edit: allow, bash: allow, …})",
            )
        return False


def _api_error(error: dict[str, Any]) -> BackendError:
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    assert isinstance(data, dict)
    message = str(data.get("message") or error.get("name") or "error")
    status = data.get("statusCode")
    retryable = bool(data.get("isRetryable")) or (isinstance(status, int) and failover_worthy_status(status))
    if error.get("name") == "MessageAbortedError":
        return BackendError("the OpenCode turn was aborted", reason="aborted", failover=False)
    return BackendError(
        f"OpenCode's model failed: {message}",
        reason="overloaded" if retryable else "opencode_error",
        failover=retryable,
    )
