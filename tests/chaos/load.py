"""Steady load: sessions, each sending its messages in order like a user would.

A message is sent until an ingress accepts it (202, or 200 for a message id it already has),
then the session thinks for a while and sends the next one. 5xx answers, 429 and broken
connections are retried with the same `messageId` (so a retry can never make a second turn),
honouring Retry-After and moving to the other ingress replica as a load balancer would, for at
most `retry_window` seconds; after that the message counts as refused and the session goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

__all__ = ["Load", "Sent", "session_key"]

_CONNECT_BACKOFF = 0.5  # seconds before retrying after a broken connection (no Retry-After then)


def session_key(peer: str) -> str:
    """The session a direct message from `peer` lands in (`session.dmScope: per-peer`)."""
    return f"agent:main:direct:{peer}"


@dataclass
class Sent:
    """One message as its user saw it."""

    peer: str
    n: int
    message_id: str
    text: str
    first_sent: float  # wall clock (the replies carry the runner's wall clock)
    accepted_at: float | None = None
    turn_id: str | None = None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    rejected: str | None = None  # a 4xx other than 429: a bug in the harness or the ingress

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None

    @property
    def waited(self) -> float:
        """How long the user retried before the message was accepted (or gave up)."""
        end = self.accepted_at if self.accepted_at is not None else self.first_sent
        return max(0.0, end - self.first_sent)


@dataclass
class Load:
    ingress_urls: Sequence[str]
    token: str
    sessions: int
    seed: int
    think: float = 1.0  # mean seconds between a message's acceptance and the next one
    retry_window: float = 30.0
    request_timeout: float = 10.0
    sent: list[Sent] = field(default_factory=list)

    def peers(self) -> list[str]:
        return [f"u{i}" for i in range(self.sessions)]

    async def run(self, stop: asyncio.Event) -> None:
        """Every session sends until `stop` is set; returns when each has finished its message."""
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=self.sessions * 2, max_keepalive_connections=self.sessions)
        async with httpx.AsyncClient(headers=headers, timeout=self.request_timeout, limits=limits) as http:
            await asyncio.gather(*(self._session(http, i, peer, stop) for i, peer in enumerate(self.peers())))

    async def _session(self, http: httpx.AsyncClient, index: int, peer: str, stop: asyncio.Event) -> None:
        rng = random.Random(f"{self.seed}:{peer}")
        n = 0
        while not stop.is_set():
            msg = Sent(peer, n, f"{peer}-m{n}", f"{peer} message {n}", time.time())
            self.sent.append(msg)
            await self._deliver(http, msg, index + n)
            n += 1
            # think time: the load's pace (an input of the test, not synchronisation)
            try:
                await asyncio.wait_for(stop.wait(), rng.uniform(0, 2 * self.think))
            except TimeoutError:
                pass

    async def _deliver(self, http: httpx.AsyncClient, msg: Sent, replica: int) -> None:
        body = {"text": msg.text, "messageId": msg.message_id, "peer": {"kind": "direct", "id": msg.peer}}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window
        while True:
            url = self.ingress_urls[replica % len(self.ingress_urls)]
            msg.attempts += 1
            wait = _CONNECT_BACKOFF
            try:
                r = await http.post(f"{url}/v1/messages", json=body)
            except httpx.HTTPError as exc:
                msg.failures.append(f"{time.time():.1f} {url} {type(exc).__name__}")
                replica += 1  # the load balancer tries the other replica
            else:
                if r.status_code in (200, 202):
                    msg.accepted_at = time.time()
                    msg.turn_id = r.json().get("turnId")
                    return
                msg.failures.append(f"{time.time():.1f} {url} {r.status_code} {r.text[:160]}")
                if r.status_code != 429 and r.status_code < 500:
                    msg.rejected = f"{r.status_code} {r.text[:300]}"
                    return
                wait = _retry_after(r, _CONNECT_BACKOFF)
                if r.status_code != 429:
                    replica += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                return  # refused: not accepted within the retry window
            await asyncio.sleep(min(wait, remaining))


def _retry_after(r: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(r.headers.get("retry-after", default)))
    except ValueError:
        return default
