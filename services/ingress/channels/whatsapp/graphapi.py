"""A Graph API client for one WhatsApp business number: the access token in the Authorization
header (never in a URL or a log line), Graph's error shape (`{"error": {"code", "message",
"error_data": {"details"}}}`) turned into typed errors branching on `code`, not on the text."""

from __future__ import annotations

from typing import Any, Final

import httpx
import msgspec

__all__ = ["GraphApi", "GraphError", "GraphNetworkError"]

# throughput (130429), pair rate (131056), WABA/app rate (80007), app call rate (4), generic (131000)
_TRANSIENT_CODES: Final = frozenset({4, 80007, 130429, 131000, 131056})


class GraphError(Exception):
    def __init__(self, status: int, code: int, message: str, details: str = "") -> None:
        super().__init__(f"HTTP {status}: ({code}) {message}" + (f": {details}" if details else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in _TRANSIENT_CODES or self.status == 429 or self.status >= 500


class GraphNetworkError(Exception):
    """No answer from the Graph API."""


class _ErrorData(msgspec.Struct):
    details: str = ""


class _Error(msgspec.Struct):
    message: str = ""
    code: int = 0
    error_data: _ErrorData | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


class _Sent(msgspec.Struct):
    id: str = ""


class _SendAnswer(msgspec.Struct):
    messages: list[_Sent] = []


_error = msgspec.json.Decoder(_ErrorBody)
_sent = msgspec.json.Decoder(_SendAnswer)


class GraphApi:
    def __init__(self, base_url: str, version: str, phone_number_id: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/{version.strip('/')}/{phone_number_id}/",
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=10.0),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send_text(self, to: str, text: str, *, group: bool = False, reply_to: str | None = None) -> str:
        """The sent message's `wamid`; GraphError or GraphNetworkError."""
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "group" if group else "individual",
            "to": to,
            "type": "text",
            "text": {"body": text, "preview_url": False},
        }
        if reply_to:
            body["context"] = {"message_id": reply_to}
        try:
            resp = await self._client.post(
                "messages", content=msgspec.json.encode(body), headers={"content-type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise GraphNetworkError(f"messages: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = _error.decode(resp.content).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                err = None
            if err is None:
                raise GraphError(resp.status_code, 0, f"not a Graph API answer (HTTP {resp.status_code})")
            details = err.error_data.details if err.error_data else ""
            raise GraphError(resp.status_code, err.code, err.message, details)
        try:
            answer = _sent.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GraphError(resp.status_code, 0, "malformed answer to a send") from None
        return answer.messages[0].id if answer.messages else ""
