"""Attachment downloads from Discord's CDN: a client of its own that never carries the bot token
(a CDN URL is signed; it needs no Authorization, and the token must not leave for another host),
follows no redirect, and streams the body, stopping past the limit it is given.

Only URLs `attachment_url_refused` allows are asked for: Discord's CDN hosts, or the REST
base's own origin (a Discord-compatible endpoint, the fake Discord of the tests)."""

from __future__ import annotations

import asyncio
from typing import Final

import httpx

from clawmesh.channels.discord import attachment_url_refused

from ..media import MediaError, read_body
from .rest import USER_AGENT

__all__ = ["Cdn"]

# a file of `mediaMaxMb` (100 MB by default) from a datacenter: well within; a CDN that trickles
# must not hold the account's dispatches (they wait in order behind a download) much longer
DOWNLOAD_DEADLINE: Final = 120.0


class Cdn:
    def __init__(self, api_base: str, *, deadline: float = DOWNLOAD_DEADLINE) -> None:
        self.api_base = api_base
        self.deadline = deadline
        self._client = httpx.AsyncClient(
            headers={"user-agent": USER_AGENT},
            timeout=httpx.Timeout(30.0, connect=10.0),
            follow_redirects=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def download(self, url: str, limit: int) -> bytes:
        """The file's bytes; MediaError when the URL is not one to fetch, the CDN refuses or
        fails, or more than `limit` bytes come (the rest is never read)."""
        why = attachment_url_refused(url, self.api_base)
        if why is not None:
            raise MediaError(f"attachment URL refused: {why}")
        try:
            async with asyncio.timeout(self.deadline), self._client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise MediaError(f"the CDN answered HTTP {resp.status_code}")
                return await read_body(resp, limit)
        except httpx.TransportError as exc:  # its message carries no URL (the signed query)
            raise MediaError(f"download: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise MediaError(f"download not done within {self.deadline:.0f}s") from None
