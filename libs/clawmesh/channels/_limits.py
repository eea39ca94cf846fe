"""What the platform modules share about a message's files: the account's byte limit and the
origin of a download URL (which hosts a token may go to)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import ChannelAccount

__all__ = ["media_limit", "url_origin", "url_refused"]


def media_limit(settings: ChannelAccount, default_mb: float) -> int:
    """The most bytes one file may have: `mediaMaxMb`, else the platform's default (OpenClaw's)."""
    configured = settings.media_max_mb if settings.media_max_mb is not None else default_mb
    return max(0, int(configured * 1024 * 1024))


def url_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without credentials in it; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def url_refused(url: str, api_base: str, domains: tuple[str, ...], whose: str) -> str | None:
    """None when a file may be fetched from `url`: https on one of the platform's `domains`
    (or a subdomain), or the API base's own origin (a compatible endpoint or a test double
    serving both); else why not. The URL comes from a message: ingress must not be made to
    fetch from hosts on its own network, nor send a token anywhere else."""
    found = url_origin(url)
    if found is None:
        return "not an http(s) URL"
    scheme, host, _ = found
    if found == url_origin(api_base):
        return None
    if scheme == "https" and any(host == d or host.endswith("." + d) for d in domains):
        return None
    return f"{host} is neither {whose}"
