"""`runnerType: a2a`: a remote A2A agent (docs/interop.md), over its JSON-RPC binding.

Where: `a2a.url` is the agent's card (a `….json` URL), its base URL (the card is then at
`<url>/.well-known/agent-card.json`, where a2a-sdk's resolver looks), or, when no card is
there, its JSON-RPC endpoint itself, called without discovery as OpenClaw calls its A2A peers.
The card's JSON-RPC interface (v1 `supportedInterfaces`, else v0.3's `url`/`preferredTransport`/
`additionalInterfaces`) and `capabilities.streaming` decide the call; what was found is kept
per URL for a few minutes.

How: v1 (`A2A-Version: 1.0`) `SendStreamingMessage` when the card says it streams, else a
blocking `SendMessage` (a task still working when that returns, as OpenClaw's does after its
replyTimeoutMs, is polled with `GetTask`). A v0.3 card, or a v1 call answered -32601/-32009,
switches to `message/stream`/`message/send` and v0.3's shapes. Only the turn's message is sent:
the remote agent keeps the conversation, one `contextId` per clawmesh session: derived from the
session key and the id of the session's first turn there (hashed: the key names the chat peer,
which stays here), kept in the transcript for the later turns, new after `/new` or `/reset`. Artifact text streams as
deltas and the reply is the task's artifacts (else its status message, or a bare message
answer). Cancelling the turn (`/stop`, the turn timeout) closes the stream and sends
`CancelTask` best effort (a clawmesh peer stops its turn; OpenClaw refuses it with -32004: the
local turn ends anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final, Literal

import httpx
import msgspec

from clawmesh.config import A2ASettings, ConfigError, secret_value

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn, failover_worthy_status
from ._sse import sse_events

__all__ = ["A2ABackend", "Endpoint", "Reply", "card_endpoint", "context_id", "decode_event", "send_params"]

Version = Literal["1.0", "0.3"]

_CARD_PATH: Final = "/.well-known/agent-card.json"
_CARD_TTL: Final = 300.0
_MAX_CARD: Final = 256 * 1024
_MAX_BODY: Final = 4 * 1024 * 1024  # one JSON-RPC answer
_MAX_STREAM: Final = 16 * 1024 * 1024  # one streamed turn, all events
_CANCEL_TIMEOUT: Final = 5.0
_DRAIN: Final = 2.0  # the most a stream is read past its last event
_POLL_FIRST: Final = 0.5
_POLL_MAX: Final = 5.0
_CONTEXT_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TERMINAL: Final = frozenset({"completed", "failed", "canceled", "rejected"})
_INTERRUPTED: Final = frozenset({"input-required", "auth-required"})
# the server does not speak v1: method not found, version not supported
_NOT_V1: Final = frozenset({-32601, -32009})
_UNSUPPORTED_OPERATION: Final = -32004
_METHODS: Final[dict[tuple[str, Version], str]] = {
    ("send", "1.0"): "SendMessage",
    ("send", "0.3"): "message/send",
    ("stream", "1.0"): "SendStreamingMessage",
    ("stream", "0.3"): "message/stream",
    ("get", "1.0"): "GetTask",
    ("get", "0.3"): "tasks/get",
    ("cancel", "1.0"): "CancelTask",
    ("cancel", "0.3"): "tasks/cancel",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """The remote agent's JSON-RPC endpoint and what it speaks."""

    url: str
    version: Version
    streaming: bool
    card: str | None  # the card it was found in (None: `url` as configured, no discovery)


def context_id(session_key: str, turn_id: str) -> str:
    """The A2A `contextId` a clawmesh session starts at the remote with `turn_id` (its later
    turns reuse it from the transcript): the same for a redelivered turn, 1-128 of
    [A-Za-z0-9._:-], and no peer id in it."""
    return "clawmesh-" + hashlib.sha256(f"{session_key}\n{turn_id}".encode()).hexdigest()[:40]


# --- the wire: requests ------------------------------------------------------------------


def send_params(text: str, context: str, message_id: str, version: Version) -> dict[str, Any]:
    """`SendMessage`/`SendStreamingMessage` params in `version`'s shapes (blocking)."""
    if version == "0.3":
        return {
            "message": {
                "kind": "message",
                "messageId": message_id,
                "role": "user",
                "parts": [{"kind": "text", "text": text}],
                "contextId": context,
            },
            "configuration": {"blocking": True, "acceptedOutputModes": ["text/plain"]},
        }
    # v1 blocks by default
    return {
        "message": {
            "messageId": message_id,
            "role": "ROLE_USER",
            "parts": [{"text": text}],
            "contextId": context,
        }
    }


def _request(action: str, version: Version, params: dict[str, Any]) -> bytes:
    body = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": _METHODS[action, version], "params": params}
    return msgspec.json.encode(body)


# --- the wire: answers (tolerant: unknown keys ignored, v1 and v0.3 in one set of types) -----


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    data: Any = None
    url: str | None = None
    kind: str | None = None  # v0.3: text | data | file
    file: Any = None  # v0.3: {uri | bytes, name, mimeType}


class _Message(msgspec.Struct, rename="camel"):
    parts: list[_Part] = []
    task_id: str | None = None


class _Status(msgspec.Struct):
    state: str = ""
    message: _Message | None = None


class _Artifact(msgspec.Struct, rename="camel"):
    artifact_id: str = ""
    parts: list[_Part] = []


class _Task(msgspec.Struct, rename="camel"):
    id: str = ""
    status: _Status = msgspec.field(default_factory=_Status)
    artifacts: list[_Artifact] = []


class _StatusUpdate(msgspec.Struct, rename="camel"):
    task_id: str = ""
    status: _Status = msgspec.field(default_factory=_Status)


class _ArtifactUpdate(msgspec.Struct, rename="camel"):
    task_id: str = ""
    artifact: _Artifact = msgspec.field(default_factory=_Artifact)
    append: bool = False


class _Wrapped(msgspec.Struct, rename="camel"):
    # v1: a one-of wrapper; v0.3: the object itself, told by its `kind`
    task: _Task | None = None
    message: _Message | None = None
    status_update: _StatusUpdate | None = None
    artifact_update: _ArtifactUpdate | None = None
    kind: str | None = None


class _Error(msgspec.Struct):
    code: int = 0
    message: str = ""


class _Response(msgspec.Struct):
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: _Error | None = None


Event = _Task | _Message | _StatusUpdate | _ArtifactUpdate

_KINDS: Final[dict[str, type[Event]]] = {
    "task": _Task,
    "message": _Message,
    "status-update": _StatusUpdate,
    "artifact-update": _ArtifactUpdate,
}


def decode_event(raw: bytes) -> Event | None:
    """One `result` (a SendMessage answer or a stream event) in either version's shape; None
    for a result of no kind known here. A bare object with an `id` and a `status` (GetTask's
    answer) is a task."""
    wrapped = msgspec.json.decode(raw, type=_Wrapped)
    for found in (wrapped.task, wrapped.message, wrapped.status_update, wrapped.artifact_update):
        if found is not None:
            return found
    kind = _KINDS.get(wrapped.kind or "")
    if kind is not None:
        return msgspec.json.decode(raw, type=kind)
    probe = msgspec.json.decode(raw)
    if isinstance(probe, dict) and "id" in probe and "status" in probe:
        return msgspec.json.decode(raw, type=_Task)
    return None


def _state(raw: str) -> str:
    """v1's `TASK_STATE_INPUT_REQUIRED` and v0.3's `input-required` alike: `input-required`."""
    state = raw.strip().lower().removeprefix("task_state_").replace("_", "-")
    return "canceled" if state == "cancelled" else state


def _parts_text(parts: list[_Part]) -> str:
    """Text parts joined as they are (appended chunks of one text); data, links and files on
    their own lines."""
    out: list[str] = []
    previous_text = False
    for part in parts:
        piece: str | None = None
        is_text = False
        if part.text is not None and part.kind in (None, "text"):
            piece, is_text = part.text, True
        elif part.data is not None and part.kind in (None, "data"):
            piece = json.dumps(part.data, separators=(",", ":"), ensure_ascii=False)
        elif part.url:
            piece = part.url
        elif isinstance(part.file, dict) and isinstance(part.file.get("uri"), str):
            piece = part.file["uri"]
        if piece is None:
            continue
        if out and not (is_text and previous_text):
            out.append("\n")
        out.append(piece)
        previous_text = is_text
    return "".join(out)


class Reply:
    """What the remote agent said so far about this turn's task."""

    def __init__(self) -> None:
        self.task_id: str | None = None
        self.state = ""
        self.status_text = ""
        self.message_text: str | None = None
        self.artifacts: dict[str, str] = {}
        self.streamed = ""

    def feed(self, event: Event) -> None:
        if isinstance(event, _Task):
            self.task_id = event.id or self.task_id
            self._status(event.status)
            for artifact in event.artifacts:  # a task is a snapshot: its artifacts replace ours
                self.artifacts[artifact.artifact_id] = _parts_text(artifact.parts)
        elif isinstance(event, _StatusUpdate):
            self.task_id = event.task_id or self.task_id
            self._status(event.status)
        elif isinstance(event, _ArtifactUpdate):
            self.task_id = event.task_id or self.task_id
            key, text = event.artifact.artifact_id, _parts_text(event.artifact.parts)
            self.artifacts[key] = self.artifacts.get(key, "") + text if event.append else text
        else:  # a message answers at once: the exchange is over
            self.task_id = event.task_id or self.task_id
            self.message_text = _parts_text(event.parts)
            self.state = "completed"

    def _status(self, status: _Status) -> None:
        if status.state:
            self.state = _state(status.state)
        if status.message is not None:
            self.status_text = _parts_text(status.message.parts)

    @property
    def done(self) -> bool:
        return self.state in _TERMINAL or self.state in _INTERRUPTED

    def text(self) -> str:
        """The reply: the artifacts' text, else the completed task's status message, else a
        message answer."""
        texts = [t for t in self.artifacts.values() if t]
        if texts:
            return "\n\n".join(texts)
        if self.message_text is not None:
            return self.message_text
        return self.status_text if self.state == "completed" else ""

    def fresh(self) -> str:
        """The reply's text not yet streamed, when it only grew since (a replaced artifact that
        no longer starts with what was sent is corrected by the final reply, not by deltas)."""
        full = self.text()
        if len(full) > len(self.streamed) and full.startswith(self.streamed):
            delta = full[len(self.streamed) :]
            self.streamed = full
            return delta
        return ""

    def outcome(self, where: str) -> str:
        """The reply text of a finished task, or the error the user is told."""
        said = f": {self.status_text[:500]}" if self.status_text else ""
        if self.state == "completed":
            return self.text()
        if self.state in ("failed", "rejected", "canceled"):
            verb = {"failed": "failed", "rejected": "rejected", "canceled": "cancelled"}[self.state]
            raise BackendError(
                f"the A2A agent at {where} {verb} the task{said}", reason="remote_error", failover=False
            )
        if self.state == "input-required":
            raise BackendError(
                f"the A2A agent at {where} asks for more input, which a proxied turn cannot give{said}",
                reason="remote_error",
                failover=False,
                hint="send everything the remote agent needs in one message",
            )
        if self.state == "auth-required":
            raise BackendError(
                f"the A2A agent at {where} needs an authorisation it must get elsewhere{said}",
                reason="auth",
                failover=False,
                hint="authorise clawmesh at the remote agent (its own sign-in), then ask again",
            )
        raise BackendError(
            f"the A2A agent at {where} ended the exchange with the task {self.state or 'in no state'}",
            reason="remote_error",
            failover=False,
        )


# --- the card --------------------------------------------------------------------------------


def _is_jsonrpc(binding: Any) -> bool:
    return isinstance(binding, str) and binding.strip().upper().replace("-", "") == "JSONRPC"


def _http(url: Any, base: str) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return None
    full = httpx.URL(base).join(url.strip())
    return str(full) if full.scheme in ("http", "https") else None


def card_endpoint(card: Any, card_url: str) -> Endpoint:
    """The card's JSON-RPC endpoint: a v1 interface first, then a v0.3 one, then the legacy keys."""
    if not isinstance(card, dict):
        raise BackendError(
            f"{card_url} is not an agent card (not a JSON object)", reason="remote_error", failover=False
        )
    capabilities = card.get("capabilities")
    streaming = isinstance(capabilities, dict) and capabilities.get("streaming") is True
    found: list[tuple[str, Version]] = []
    interfaces = card.get("supportedInterfaces")
    for interface in interfaces if isinstance(interfaces, list) else ():
        if isinstance(interface, dict) and _is_jsonrpc(interface.get("protocolBinding")):
            url = _http(interface.get("url"), card_url)
            version = str(interface.get("protocolVersion") or "1.0")
            if url:
                found.append((url, "0.3" if version.startswith("0.") else "1.0"))
    found.sort(key=lambda item: item[1] != "1.0")  # stable: the card's order within a version
    if not found:
        legacy: Version = "1.0" if str(card.get("protocolVersion") or "0.3").startswith("1.") else "0.3"
        candidates = [(card.get("url"), card.get("preferredTransport") or "JSONRPC")]
        extra = card.get("additionalInterfaces")
        for interface in extra if isinstance(extra, list) else ():
            if isinstance(interface, dict):
                candidates.append((interface.get("url"), interface.get("transport")))
        for raw, transport in candidates:
            url = _http(raw, card_url)
            if url and _is_jsonrpc(transport):
                found.append((url, legacy))
                break
    if not found:
        raise BackendError(
            f"the agent card at {card_url} offers no JSON-RPC interface (clawmesh speaks A2A over JSON-RPC)",
            reason="config",
            failover=False,
        )
    url, version = found[0]
    return Endpoint(url=url, version=version, streaming=streaming, card=card_url)


# --- errors ----------------------------------------------------------------------------------


class _RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _rpc_error(error: _RpcFailure, where: str) -> BackendError:
    text = f"the A2A agent at {where} answered error {error.code}: {error.message[:300]}"
    if error.code == -32000 and "rate" in error.message.lower():  # OpenClaw's "Peer is rate limited"
        return BackendError(text, reason="rate_limit", failover=True)
    if error.code == -32603:
        return BackendError(text, reason="server", failover=True)
    return BackendError(text, reason="remote_error", failover=False)


def _http_error(status: int, body: bytes, where: str) -> BackendError:
    text = f"the A2A agent at {where} answered HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
    if status in (401, 403):
        return BackendError(
            text,
            reason="auth",
            failover=False,
            hint="check the agent's a2a.token (the remote's bearer token)",
        )
    if failover_worthy_status(status):
        return BackendError(text, reason="rate_limit" if status == 429 else "server", failover=True)
    return BackendError(text, reason="remote_error", failover=False)


def _malformed(where: str, exc: Exception) -> BackendError:
    return BackendError(
        f"the A2A agent at {where} sent a malformed answer: {exc}", reason="remote_error", failover=False
    )


async def _read(resp: httpx.Response, limit: int, where: str) -> bytes:
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise BackendError(
                f"the A2A agent at {where} answered more than {limit // 1024} KiB",
                reason="remote_error",
                failover=False,
            )
    return bytes(body)


async def _lines(resp: httpx.Response, limit: int, where: str) -> AsyncIterator[str]:
    """The response's lines, at most `limit` characters in all (a line is not held unbounded)."""
    total = 0
    pending = ""
    async for chunk in resp.aiter_text():
        total += len(chunk)
        if total > limit:
            raise BackendError(
                f"the A2A agent at {where} streamed more than {limit // (1024 * 1024)} MiB for one turn",
                reason="remote_error",
                failover=False,
            )
        if "\n" not in chunk:
            pending += chunk
            continue
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        for line in lines:
            yield line.removesuffix("\r")
    if pending:
        yield pending.removesuffix("\r")


def _answer(data: bytes) -> tuple[bytes | None, _RpcFailure | None]:
    response = msgspec.json.decode(data, type=_Response)
    if response.error is not None:
        return None, _RpcFailure(response.error.code, response.error.message)
    return bytes(response.result), None


class _Downgrade(Exception):
    """The endpoint does not speak v1: try v0.3."""


class _NoStreaming(Exception):
    """The endpoint refused to stream: ask again, blocking."""


# --- the backend -----------------------------------------------------------------------------


class A2ABackend:
    kind = "a2a"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(30.0), trust_env=False)
        self._endpoints: dict[str, tuple[float, Endpoint]] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, A2ASettings)
        try:
            token = secret_value(settings.token, turn.env, settings.token_path) if settings.token else None
        except ConfigError as exc:
            raise BackendError(str(exc.problems[0]), reason="config", failover=False) from None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(30.0, read=turn.timeout)
        context = turn.remote_session
        if not (context and _CONTEXT_ID.match(context)):
            context = context_id(turn.session_key, turn.turn_id)
        reply = Reply()
        where = settings.url
        endpoint: Endpoint | None = None
        try:
            endpoint = await self._endpoint(settings, headers)
            where = endpoint.url
            endpoint = await self._exchange(
                endpoint, settings, turn.text, context, headers, timeout, reply, on_delta
            )
            if not reply.done:
                await self._poll(endpoint, headers, timeout, reply, turn.timeout)
        except asyncio.CancelledError:
            if endpoint is not None and reply.task_id and not reply.done:
                learned = self._endpoints.get(settings.url)  # after a downgrade: the version it speaks
                await self._cancel(learned[1] if learned else endpoint, headers, reply.task_id)
            raise
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _malformed(where, exc) from None
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"the A2A agent at {where} timed out: {exc!r}", reason="timeout", failover=True
            ) from None
        except httpx.TransportError as exc:
            self._endpoints.pop(settings.url, None)
            raise BackendError(
                f"the A2A agent at {where} is unreachable: {exc!r}", reason="connection", failover=True
            ) from None
        text = reply.outcome(where)
        return ProxyResult(
            text=text, remote_session=context, model=f"a2a:{where}", extra={"taskId": reply.task_id}
        )

    async def _endpoint(self, settings: A2ASettings, headers: dict[str, str]) -> Endpoint:
        loop = asyncio.get_running_loop()
        cached = self._endpoints.get(settings.url)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        endpoint = await self._discover(settings.url, headers)
        self._endpoints[settings.url] = (loop.time() + _CARD_TTL, endpoint)
        return endpoint

    def _remember(self, settings: A2ASettings, endpoint: Endpoint) -> None:
        self._endpoints[settings.url] = (asyncio.get_running_loop().time() + _CARD_TTL, endpoint)

    async def _discover(self, url: str, headers: dict[str, str]) -> Endpoint:
        """The card at `url` (a `.json` URL: it must be there) or below it; no card there: `url`
        is the JSON-RPC endpoint itself."""
        parsed = httpx.URL(url)
        explicit = parsed.path.endswith(".json")
        card_url = url if explicit else str(parsed.copy_with(path=parsed.path.rstrip("/") + _CARD_PATH))
        get_headers = {k: v for k, v in headers.items() if k != "Content-Type"} | {
            "Accept": "application/json"
        }
        async with self._client.stream("GET", card_url, headers=get_headers) as resp:
            status = resp.status_code
            body = await _read(resp, _MAX_CARD, card_url)
        if status == 200:
            try:
                card = msgspec.json.decode(body)
            except msgspec.DecodeError:
                card = None
            if card is not None or explicit:
                return card_endpoint(card, card_url)
        if explicit or status >= 500:
            raise _http_error(status, body, card_url)
        return Endpoint(url=url, version="1.0", streaming=False, card=None)

    async def _exchange(
        self,
        endpoint: Endpoint,
        settings: A2ASettings,
        text: str,
        context: str,
        headers: dict[str, str],
        timeout: httpx.Timeout,
        reply: Reply,
        on_delta: OnDelta,
    ) -> Endpoint:
        """Send the message the way the endpoint takes it, learning from refusals; the endpoint
        as finally used."""
        while True:
            params = send_params(text, context, uuid.uuid4().hex, endpoint.version)
            try:
                if endpoint.streaming:
                    await self._stream(endpoint, params, headers, timeout, reply, on_delta)
                else:
                    await self._send(endpoint, params, headers, timeout, reply)
                return endpoint
            except _Downgrade:
                endpoint = dataclasses.replace(endpoint, version="0.3")
            except _NoStreaming:
                endpoint = dataclasses.replace(endpoint, streaming=False)
            self._remember(settings, endpoint)

    def _refusal(self, error: _RpcFailure, endpoint: Endpoint, streaming: bool) -> Exception:
        if error.code in _NOT_V1 and endpoint.version == "1.0":
            return _Downgrade()
        if error.code == _UNSUPPORTED_OPERATION and streaming:
            return _NoStreaming()
        return _rpc_error(error, endpoint.url)

    def _rpc_headers(self, endpoint: Endpoint, headers: dict[str, str], accept: str) -> dict[str, str]:
        # a request without A2A-Version is v0.3 (spec §3.6.2)
        version = {"A2A-Version": "1.0"} if endpoint.version == "1.0" else {}
        return {**headers, **version, "Accept": accept}

    async def _call(
        self,
        endpoint: Endpoint,
        action: str,
        params: dict[str, Any],
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> tuple[bytes | None, _RpcFailure | None]:
        async with self._client.stream(
            "POST",
            endpoint.url,
            content=_request(action, endpoint.version, params),
            headers=self._rpc_headers(endpoint, headers, "application/json"),
            timeout=timeout,
        ) as resp:
            body = await _read(resp, _MAX_BODY, endpoint.url)
            if resp.status_code != 200:
                raise _http_error(resp.status_code, body, endpoint.url)
        return _answer(body)

    async def _send(
        self,
        endpoint: Endpoint,
        params: dict[str, Any],
        headers: dict[str, str],
        timeout: httpx.Timeout,
        reply: Reply,
    ) -> None:
        result, error = await self._call(endpoint, "send", params, headers, timeout)
        if error is not None:
            raise self._refusal(error, endpoint, streaming=False)
        event = decode_event(result or b"null")
        if event is None:
            raise _malformed(endpoint.url, ValueError("the result is neither a task nor a message"))
        reply.feed(event)

    async def _stream(
        self,
        endpoint: Endpoint,
        params: dict[str, Any],
        headers: dict[str, str],
        timeout: httpx.Timeout,
        reply: Reply,
        on_delta: OnDelta,
    ) -> None:
        async with self._client.stream(
            "POST",
            endpoint.url,
            content=_request("stream", endpoint.version, params),
            headers=self._rpc_headers(endpoint, headers, "text/event-stream"),
            timeout=timeout,
        ) as resp:
            if resp.status_code != 200:
                raise _http_error(resp.status_code, await _read(resp, _MAX_BODY, endpoint.url), endpoint.url)
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                # a refusal (or a server answering at once) is a plain JSON-RPC answer
                result, error = _answer(await _read(resp, _MAX_BODY, endpoint.url))
                if error is not None:
                    raise self._refusal(error, endpoint, streaming=True)
                event = decode_event(result or b"null")
                if event is not None:
                    reply.feed(event)
                return
            events = 0
            try:
                async with asyncio.timeout(None) as drain:
                    async for _, data in sse_events(_lines(resp, _MAX_STREAM, endpoint.url)):
                        # after the last event, read on to the end (the server closes the
                        # stream): a response left unread closes its keep-alive connection,
                        # and a new one per turn costs more than the turn's own work here
                        if not data or reply.done:
                            continue
                        result, error = _answer(data.encode())
                        if error is not None:
                            if events == 0:
                                raise self._refusal(error, endpoint, streaming=True)
                            raise _rpc_error(error, endpoint.url)
                        event = decode_event(result or b"null")
                        if event is None:
                            continue
                        events += 1
                        reply.feed(event)
                        if delta := reply.fresh():
                            await on_delta(delta)
                        if reply.done:  # but not for long, if the server keeps it open
                            drain.reschedule(asyncio.get_running_loop().time() + _DRAIN)
            except TimeoutError:
                if not reply.done:
                    raise

    async def _poll(
        self, endpoint: Endpoint, headers: dict[str, str], timeout: httpx.Timeout, reply: Reply, budget: float
    ) -> None:
        """`GetTask` until the task finishes (a blocking send that returned early, a stream that
        closed before the end), within the turn's time."""
        if not reply.task_id:
            raise BackendError(
                f"the A2A agent at {endpoint.url} ended the exchange before the task finished, without naming it",
                reason="timeout",
                failover=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        pause = _POLL_FIRST
        while not reply.done:
            if loop.time() + pause > deadline:
                raise BackendError(
                    f"the A2A agent at {endpoint.url} did not finish task {reply.task_id} in time",
                    reason="timeout",
                    failover=True,
                )
            await asyncio.sleep(pause)  # the protocol's polling (no push notifications here)
            pause = min(pause * 2, _POLL_MAX)
            result, error = await self._call(endpoint, "get", {"id": reply.task_id}, headers, timeout)
            if error is not None:
                raise _rpc_error(error, endpoint.url)
            event = decode_event(result or b"null")
            if not isinstance(event, _Task):
                raise _malformed(endpoint.url, ValueError("GetTask did not answer a task"))
            reply.feed(event)

    async def _cancel(self, endpoint: Endpoint, headers: dict[str, str], task_id: str) -> None:
        """The turn was cancelled: ask the remote to cancel the task too (bounded, best effort;
        a refusal such as OpenClaw's -32004 changes nothing here)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(
                asyncio.wait_for(
                    self._call(endpoint, "cancel", {"id": task_id}, headers, httpx.Timeout(_CANCEL_TIMEOUT)),
                    _CANCEL_TIMEOUT,
                )
            )
