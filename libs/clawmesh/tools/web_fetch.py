"""`web_fetch`: one HTTP(S) GET, its HTML turned into markdown or text, with OpenClaw's argument
names, result shape, limits and SSRF guard (OpenClaw docs `tools/web-fetch.md`).

The guard: every address the host resolves to must be a global one (no private, loopback,
link-local, CGNAT, multicast or reserved address), checked again on each redirect hop, which is
followed by hand (never by httpx) up to `maxRedirects`. `tools.web.fetch.ssrfPolicy`
relaxes it as OpenClaw does: `dangerouslyAllowPrivateNetwork` (everything), `allowedHostnames`
(exact hosts) and `blockedHostnames` (exact hosts and `*.` suffixes, denied even when private
networks are allowed). Known limit: the address httpx connects to is resolved again after the
check (OpenClaw pins it), so a host whose DNS answer changes in between is not caught.

    result = await fetch(WebFetchArgs(url="https://example.com"), fetch_settings(config))
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec

from ..config import Config, ToolsSection, WebFetchSsrfPolicy, WebFetchTools
from ..errors import ClawmeshError
from ..hooks import wrap_external_content
from .specs import WebFetchArgs

__all__ = [
    "WebFetchBlocked",
    "WebFetchError",
    "WebFetchSettings",
    "fetch",
    "fetch_settings",
    "html_to_markdown",
    "markdown_to_text",
]

DEFAULT_MAX_CHARS: Final = 20_000
DEFAULT_MAX_RESPONSE_BYTES: Final = 750_000
_RESPONSE_BYTES_RANGE: Final = (32_000, 10_000_000)
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
DEFAULT_MAX_REDIRECTS: Final = 3
DEFAULT_USER_AGENT: Final = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
# OpenClaw's texts
BLOCKED_HOST_OR_IP: Final = "Blocked hostname or private/internal/special-use IP address"
BLOCKED_RESOLVED_IP: Final = "Blocked: resolves to private/internal/special-use IP address"


class WebFetchError(ClawmeshError):
    """A fetch that could not be done (bad URL, network error, timeout, too many redirects)."""

    def __init__(self, message: str) -> None:
        super().__init__("WEB_FETCH_FAILED", message)


class WebFetchBlocked(ClawmeshError):
    """A target the SSRF policy refuses."""

    def __init__(self, message: str) -> None:
        super().__init__("WEB_FETCH_BLOCKED", message)


@dataclass(frozen=True, slots=True)
class WebFetchSettings:
    enabled: bool = True
    max_chars: int = DEFAULT_MAX_CHARS
    max_chars_cap: int = DEFAULT_MAX_CHARS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    user_agent: str = DEFAULT_USER_AGENT
    allow_private_network: bool = False
    allowed_hostnames: frozenset[str] = frozenset()
    blocked_hostnames: tuple[str, ...] = ()


def _host(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _settings_from(web: WebFetchTools | None) -> WebFetchSettings:
    if web is None:
        return WebFetchSettings()
    ssrf = web.ssrf_policy
    cap = web.max_chars_cap if web.max_chars_cap and web.max_chars_cap > 0 else DEFAULT_MAX_CHARS
    low, high = _RESPONSE_BYTES_RANGE
    return WebFetchSettings(
        enabled=web.enabled is not False,
        max_chars=min(web.max_chars, cap)
        if web.max_chars and web.max_chars > 0
        else min(DEFAULT_MAX_CHARS, cap),
        max_chars_cap=cap,
        max_response_bytes=min(max(web.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES, low), high),
        timeout_seconds=web.timeout_seconds
        if web.timeout_seconds and web.timeout_seconds > 0
        else DEFAULT_TIMEOUT_SECONDS,
        max_redirects=web.max_redirects
        if web.max_redirects is not None and web.max_redirects >= 0
        else DEFAULT_MAX_REDIRECTS,
        user_agent=web.user_agent or DEFAULT_USER_AGENT,
        allow_private_network=bool(ssrf and ssrf.dangerously_allow_private_network),
        allowed_hostnames=frozenset(_host(h) for h in (ssrf.allowed_hostnames or ()) if ssrf)
        if ssrf
        else frozenset(),
        blocked_hostnames=tuple(_host(h) for h in (ssrf.blocked_hostnames or ())) if ssrf else (),
    )


def _merged(base: WebFetchTools | None, over: WebFetchTools | None) -> WebFetchTools | None:
    """`over`'s keys on top of `base`'s (ssrfPolicy key by key)."""
    if base is None or over is None:
        return over or base
    fields = {
        f: getattr(over, f) if getattr(over, f) is not None else getattr(base, f)
        for f in WebFetchTools.__struct_fields__
    }
    if base.ssrf_policy is not None and over.ssrf_policy is not None:
        fields["ssrf_policy"] = msgspec.structs.replace(
            base.ssrf_policy,
            **{
                f: getattr(over.ssrf_policy, f)
                for f in WebFetchSsrfPolicy.__struct_fields__
                if getattr(over.ssrf_policy, f) is not None
            },
        )
    return WebFetchTools(**fields)


def _web_fetch(tools: ToolsSection | None) -> WebFetchTools | None:
    return tools.web.fetch if tools is not None and tools.web is not None else None


def fetch_settings(config: Config, agent_id: str | None = None) -> WebFetchSettings:
    """`tools.web.fetch`, with the agent's own `agents.list[].tools.web.fetch` keys on top."""
    view = config.agent_view(agent_id) if agent_id is not None else None
    own = _web_fetch(view.entry.tools) if view is not None else None
    return config.derived(
        f"tools.web.fetch:{agent_id if own is not None else ''}",
        lambda c: _settings_from(_merged(_web_fetch(c.document.tools), own)),
    )


# --- the SSRF guard ----------------------------------------------------------------------------


def _blocked_ip(text: str) -> bool:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _host_listed(host: str, patterns: tuple[str, ...]) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_target(url: str, settings: WebFetchSettings, resolve: Any = _resolve) -> None:
    """Raises WebFetchBlocked when the URL's host is one the policy refuses (every address it
    resolves to is checked), WebFetchError when it cannot be resolved."""
    parts = urlsplit(url)
    host = _host(parts.hostname or "")
    if _host_listed(host, settings.blocked_hostnames):
        raise WebFetchBlocked(
            f"Domain policy: Blocked hostname (configured blocklist): {host}. Try a URL on a "
            "different domain or ask the operator to review blockedHostnames."
        )
    if settings.allow_private_network or host in settings.allowed_hostnames:
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise WebFetchBlocked(f"{BLOCKED_HOST_OR_IP}: {host}")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _blocked_ip(host):
            raise WebFetchBlocked(f"{BLOCKED_HOST_OR_IP}: {host}")
        return
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise WebFetchError(f"cannot resolve {host}: {exc}") from None
    if not addresses or any(_blocked_ip(a) for a in addresses):
        raise WebFetchBlocked(f"{BLOCKED_RESOLVED_IP}: {host}")


# --- HTML to markdown / text -------------------------------------------------------------------

_SKIP: Final = frozenset(
    {"script", "style", "noscript", "template", "svg", "head", "iframe", "nav", "footer"}
)
_BLOCK: Final = frozenset(
    {"p", "div", "section", "article", "main", "header", "aside", "table", "tr",
     "blockquote", "figure", "form", "dl", "dd", "dt", "hr"}
)  # fmt: skip


class _Converter(HTMLParser):
    """A small HTML → markdown converter: headings, paragraphs, links, emphasis, code, lists and
    line breaks; scripts, styles and navigation dropped. It keeps what a reader would read."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title = ""
        self._in_title = False
        self._skip = 0
        self._pre = 0
        self._links: list[str | None] = []
        self._lists: list[str] = []
        self._counters: list[int] = []

    def _newline(self, count: int = 2) -> None:
        self.out.append("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP:
            self._skip += 1
            return
        if self._skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self._newline()
            self.out.append("#" * int(tag[1]) + " ")
        elif tag in _BLOCK:
            self._newline()
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            depth = max(0, len(self._lists) - 1)
            self.out.append("\n" + "  " * depth + "- ")
        elif tag == "pre":
            self._pre += 1
            self.out.append("\n\n```\n")
        elif tag == "code" and not self._pre:
            self.out.append("`")
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag in ("em", "i"):
            self.out.append("*")
        elif tag == "a":
            href = dict(attrs).get("href")
            self._links.append(href)
            if href:
                self.out.append("[")
        if tag in ("ul", "ol"):
            self._newline(1)
            self._lists.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if re.fullmatch(r"h[1-6]", tag) or tag in _BLOCK:
            self._newline()
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._newline()
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.out.append("\n```\n\n")
        elif tag == "code" and not self._pre:
            self.out.append("`")
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag in ("em", "i"):
            self.out.append("*")
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href:
                self.out.append(f"]({href})")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        self.out.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, markdown) of an HTML document."""
    parser = _Converter()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return " ".join(parser.title.split()), text


def markdown_to_text(markdown: str) -> str:
    """The markdown above as plain text: link targets, emphasis and heading marks dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"^#{1,6} ", "", text, flags=re.MULTILINE)
    text = re.sub(r"(\*\*|\*|`{3}|`)", "", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- the fetch ---------------------------------------------------------------------------------


async def _get(
    client: httpx.AsyncClient, url: str, settings: WebFetchSettings
) -> tuple[httpx.Response, bytes, bool]:
    async with client.stream("GET", url) as response:
        body = bytearray()
        truncated = False
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > settings.max_response_bytes:
                del body[settings.max_response_bytes :]
                truncated = True
                break
        return response, bytes(body), truncated


async def fetch(args: WebFetchArgs, settings: WebFetchSettings, *, resolve: Any = _resolve) -> dict[str, Any]:
    """The tool's result (OpenClaw's WebFetchOutputSchema fields). Raises WebFetchBlocked or
    WebFetchError with a message for the model."""
    if not settings.enabled:
        raise WebFetchError("web_fetch is disabled.")
    parts = urlsplit(args.url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebFetchError(f"Invalid URL: must be http or https: {args.url!r}")
    max_chars = min(args.max_chars or settings.max_chars, settings.max_chars_cap)
    started = time.monotonic()
    url = args.url.strip()
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            async with httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=settings.timeout_seconds,
                headers={"User-Agent": settings.user_agent, "Accept-Language": "en-US,en;q=0.9"},
            ) as client:
                for hop in range(settings.max_redirects + 1):
                    await check_target(url, settings, resolve)
                    response, body, over = await _get(client, url, settings)
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        if hop == settings.max_redirects:
                            raise WebFetchError(f"Too many redirects (limit: {settings.max_redirects})")
                        url = urljoin(url, location)
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise WebFetchError(f"Redirect to a non-HTTP URL refused: {url}")
                        continue
                    break
    except TimeoutError:
        raise WebFetchError(f"web_fetch timed out after {settings.timeout_seconds:g}s: {args.url}") from None
    except httpx.HTTPError as exc:
        raise WebFetchError(f"web_fetch failed for {args.url}: {exc}") from None
    content_type = response.headers.get("content-type", "")
    charset = response.charset_encoding or "utf-8"
    raw = body.decode(charset, errors="replace")
    title = ""
    if "html" in content_type.lower() or (
        not content_type and raw.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    ):
        title, markdown = html_to_markdown(raw)
        extractor = "html"
        text = markdown if args.extract_mode == "markdown" else markdown_to_text(markdown)
    else:
        extractor = "raw"
        text = raw
    if response.status_code >= 400:
        raise WebFetchError(f"Web fetch failed ({response.status_code}): {text[:500]}")
    raw_length = len(text)
    truncated = over or raw_length > max_chars
    text = text[:max_chars]
    wrapped = wrap_external_content(text, source="web_fetch")
    result: dict[str, Any] = {
        "url": args.url,
        "finalUrl": url,
        "status": response.status_code,
    }
    if content_type:
        result["contentType"] = content_type[:256]
    if title:
        result["title"] = title[:256]
    result.update(
        {
            "extractMode": args.extract_mode,
            "extractor": extractor,
            "externalContent": {"untrusted": True, "source": "web_fetch", "wrapped": True},
            "truncated": truncated,
            "length": len(wrapped),
            "rawLength": raw_length,
            "fetchedAt": datetime.datetime.now(datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "tookMs": int((time.monotonic() - started) * 1000),
            "text": wrapped,
        }
    )
    if over:
        result["warning"] = f"Response body truncated after {settings.max_response_bytes} bytes."
    return result
