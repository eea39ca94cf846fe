"""web_fetch: OpenClaw's arguments and result shape, HTML to markdown/text, size limits, and the
SSRF guard (private and loopback targets refused, every resolved address and every redirect hop
checked). The server is a local one on 127.0.0.1, so each test that fetches from it enables the
private-network allowance (or names the host in allowedHostnames) explicitly."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.tools.catalog import CATALOG_IMPLEMENTED
from clawmesh.tools.specs import TOOL_SCHEMAS, ToolArgumentError, WebFetchArgs, validate_tool_arguments
from clawmesh.tools.web_fetch import (
    WebFetchBlocked,
    WebFetchError,
    WebFetchSettings,
    check_target,
    fetch,
    fetch_settings,
    html_to_markdown,
)

PAGE = b"""<!doctype html><html><head><title> The  Page </title><style>p{}</style>
<script>alert('x')</script></head><body><nav>menu</nav><h1>Hello</h1>
<p>Some <b>bold</b> text and a <a href="/next">link</a>.</p><ul><li>one</li><li>two</li></ul>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/page": (200, {"Content-Type": "text/html; charset=utf-8"}, PAGE),
            "/plain": (200, {"Content-Type": "text/plain"}, b"x" * 5000),
            "/big": (200, {"Content-Type": "text/plain"}, b"y" * 100_000),
            "/hop": (302, {"Location": "/page"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/to-localhost": (302, {"Location": f"http://localhost:{port}/page"}, b""),
            "/missing": (404, {"Content-Type": "text/plain"}, b"no such page"),
        }
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


OPEN = WebFetchSettings(allow_private_network=True)


def _args(url: str, **more: Any) -> WebFetchArgs:
    args = validate_tool_arguments("web_fetch", {"url": url, **more})
    assert isinstance(args, WebFetchArgs)
    return args


async def test_fetches_html_as_markdown_with_openclaws_result_fields(server: str) -> None:
    result = await fetch(_args(f"{server}/page"), OPEN)
    assert result["url"] == f"{server}/page" and result["finalUrl"] == f"{server}/page"
    assert result["status"] == 200 and result["title"] == "The Page"
    assert result["extractMode"] == "markdown" and result["truncated"] is False
    assert result["externalContent"] == {"untrusted": True, "source": "web_fetch", "wrapped": True}
    text = result["text"]
    assert text.startswith("SECURITY NOTICE:") and "Source: Web Fetch" in text
    assert "<<<EXTERNAL_UNTRUSTED_CONTENT id=" in text and "<<<END_EXTERNAL_UNTRUSTED_CONTENT id=" in text
    assert "# Hello" in text and "**bold**" in text and "[link](/next)" in text and "- one" in text
    assert "alert" not in text and "menu" not in text
    assert result["length"] == len(text) and result["rawLength"] < len(text)
    assert set(result) <= {
        "url", "finalUrl", "status", "contentType", "title", "extractMode", "extractor",
        "externalContent", "truncated", "length", "rawLength", "fetchedAt", "tookMs", "text", "warning",
    }  # fmt: skip


async def test_text_mode_drops_the_markdown(server: str) -> None:
    result = await fetch(_args(f"{server}/page", extractMode="text"), OPEN)
    assert result["extractMode"] == "text"
    assert "Hello" in result["text"] and "# Hello" not in result["text"]
    assert "bold text and a link." in result["text"] and "](/next)" not in result["text"]


async def test_max_chars_and_the_byte_cap_truncate(server: str) -> None:
    result = await fetch(_args(f"{server}/plain", maxChars=100), OPEN)
    assert result["truncated"] is True and result["rawLength"] == 5000
    assert "x" * 100 in result["text"] and "x" * 101 not in result["text"]
    capped = await fetch(
        _args(f"{server}/big", maxChars=100_000),
        WebFetchSettings(allow_private_network=True, max_response_bytes=32_000),
    )
    assert capped["truncated"] is True and capped["rawLength"] == 32_000
    assert "32000 bytes" in capped["warning"]
    # maxChars is clamped to maxCharsCap
    clamped = await fetch(
        _args(f"{server}/plain", maxChars=4000),
        WebFetchSettings(allow_private_network=True, max_chars_cap=200),
    )
    assert clamped["truncated"] is True and "x" * 201 not in clamped["text"]


async def test_redirects_are_followed_and_limited(server: str) -> None:
    result = await fetch(_args(f"{server}/hop"), OPEN)
    assert result["finalUrl"] == f"{server}/page" and result["url"] == f"{server}/hop"
    with pytest.raises(WebFetchError, match=r"Too many redirects \(limit: 3\)"):
        await fetch(_args(f"{server}/loop"), OPEN)


async def test_an_error_status_is_a_tool_error(server: str) -> None:
    with pytest.raises(WebFetchError, match=r"Web fetch failed \(404\): no such page"):
        await fetch(_args(f"{server}/missing"), OPEN)


async def test_loopback_is_refused_without_the_allowance(server: str) -> None:
    with pytest.raises(
        WebFetchBlocked, match=r"Blocked hostname or private/internal/special-use IP address: 127\.0\.0\.1"
    ):
        await fetch(_args(f"{server}/page"), WebFetchSettings())


async def test_a_redirect_to_a_refused_host_is_checked_again(server: str) -> None:
    # 127.0.0.1 is allowed by name; the redirect to `localhost` is not
    settings = WebFetchSettings(allowed_hostnames=frozenset({"127.0.0.1"}))
    assert (await fetch(_args(f"{server}/page"), settings))["status"] == 200
    with pytest.raises(WebFetchBlocked, match="localhost"):
        await fetch(_args(f"{server}/to-localhost"), settings)


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.216.34", "10.0.0.7"],  # one private address among public ones
        ["169.254.169.254"],  # link-local (cloud metadata)
        ["100.64.1.1"],  # CGNAT
        ["::1"],
        ["::ffff:192.168.1.1"],  # IPv4-mapped private
        ["fe80::1"],
    ],
)
async def test_every_resolved_address_is_checked(addresses: list[str]) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return addresses

    with pytest.raises(WebFetchBlocked, match="Blocked: resolves to private/internal/special-use IP address"):
        await check_target("https://example.test/", WebFetchSettings(), resolve)


async def test_public_addresses_pass_and_the_blocklist_wins_over_the_allowance() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "2606:2800:220:1::1"]

    await check_target("https://example.test/", WebFetchSettings(), resolve)
    blocked = WebFetchSettings(allow_private_network=True, blocked_hostnames=("*.ads.test",))
    with pytest.raises(WebFetchBlocked, match="configured blocklist"):
        await check_target("https://x.ads.test/", blocked, resolve)
    for literal in ("http://10.1.2.3/", "http://[::1]:8080/", "http://localhost/", "http://printer.local/"):
        with pytest.raises(WebFetchBlocked):
            await check_target(literal, WebFetchSettings(), resolve)


async def test_bad_urls_and_a_disabled_tool_are_errors() -> None:
    with pytest.raises(WebFetchError, match="must be http or https"):
        await fetch(_args("file:///etc/passwd"), OPEN)
    with pytest.raises(WebFetchError, match="web_fetch is disabled"):
        await fetch(_args("https://example.test/"), WebFetchSettings(enabled=False))


def test_arguments_are_validated_with_clear_errors() -> None:
    with pytest.raises(ToolArgumentError, match=r"maxChars"):
        validate_tool_arguments("web_fetch", {"url": "https://x.test", "maxChars": 50})
    with pytest.raises(ToolArgumentError, match=r"extractMode"):
        validate_tool_arguments("web_fetch", {"url": "https://x.test", "extractMode": "html"})
    with pytest.raises(ToolArgumentError, match=r"url"):
        validate_tool_arguments("web_fetch", {})
    schema = TOOL_SCHEMAS["web_fetch"].parameters
    assert schema["required"] == ["url"]
    assert set(schema["properties"]) == {"url", "extractMode", "maxChars"}
    assert "web_fetch" in CATALOG_IMPLEMENTED


def test_settings_come_from_tools_web_fetch_without_warnings() -> None:
    config = parse_config(
        {
            "tools": {
                "web": {
                    "fetch": {
                        "maxChars": 5000,
                        "maxCharsCap": 8000,
                        "maxResponseBytes": 1,
                        "timeoutSeconds": 5,
                        "maxRedirects": 1,
                        "ssrfPolicy": {
                            "dangerouslyAllowPrivateNetwork": True,
                            "allowedHostnames": ["Intranet.Example."],
                            "blockedHostnames": ["*.ads.example"],
                        },
                    }
                }
            }
        },
        checks=default_checks(),
        env={},
    )
    assert not [w for w in config.warnings if "tools.web" in w.path]
    settings = fetch_settings(config)
    assert settings.max_chars == 5000 and settings.max_chars_cap == 8000
    assert settings.max_response_bytes == 32_000  # clamped to OpenClaw's range
    assert settings.timeout_seconds == 5 and settings.max_redirects == 1
    assert settings.allow_private_network
    assert settings.allowed_hostnames == {"intranet.example"} and settings.blocked_hostnames == (
        "*.ads.example",
    )
    default = fetch_settings(parse_config({}, checks=default_checks(), env={}))
    assert default == WebFetchSettings()


def test_html_converter_keeps_code_and_drops_scripts() -> None:
    title, markdown = html_to_markdown(
        "<title>T</title><pre>a  b\n c</pre><p>x <code>y</code> <i>z</i></p><script>bad()</script>"
    )
    assert title == "T"
    assert "```\na  b\n c\n```" in markdown and "x `y` *z*" in markdown and "bad" not in markdown
    assert json.dumps(markdown)  # plain str


def test_an_agents_own_web_fetch_keys_apply_on_top_of_the_global_ones() -> None:
    config = parse_config(
        {
            "tools": {
                "web": {"fetch": {"maxChars": 5000, "ssrfPolicy": {"allowedHostnames": ["a.example"]}}}
            },
            "agents": {
                "list": [
                    {"id": "main", "default": True},
                    {
                        "id": "lab",
                        "tools": {
                            "web": {
                                "fetch": {"enabled": False, "ssrfPolicy": {"blockedHostnames": ["b.example"]}}
                            }
                        },
                    },
                ]
            },
        },
        checks=default_checks(),
        env={},
    )
    lab, main = fetch_settings(config, "lab"), fetch_settings(config, "main")
    assert lab.enabled is False and lab.max_chars == 5000
    assert lab.allowed_hostnames == {"a.example"} and lab.blocked_hostnames == ("b.example",)
    assert main.enabled is True and main.blocked_hostnames == () and main == fetch_settings(config)
