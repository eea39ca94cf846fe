"""Regenerate tests/fixtures/oracle/http_hooks.json from the real OpenClaw gateway
(`make oracle-fixtures`).

Starts `openclaw gateway run` (OpenClaw 2026.9.6, Node 24 from npm; docs/openclaw-oracle.md) with
each config below in a throw-away HOME, sends it the requests below — good and bad ones for
`POST /tools/invoke`, `/hooks/wake`, `/hooks/agent` and mapped hooks — and stores every answer:
status, `Allow`/`Retry-After`, and the body (JSON, or text for OpenClaw's plain-text refusals).
Generated ids (`runId`, `runIds`) are replaced by `<id>`. The test suite
(tests/integration/test_http_hooks_oracle.py) sends the same requests to clawmesh, started with the
same configs, and compares; it needs no node.

Each case says how its answer is compared (`compare`): `exact` (status and body), `status`
(status, and `ok: false` with an error for JSON: the message is JavaScript's own, e.g. a
JSON.parse error), or `text` (OpenClaw answers plain text; clawmesh answers the same words as
JSON `{"ok": false, "error": …}`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _run import ORACLE_VERSION, oracle_dir, oracle_env

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "http_hooks.json"

GATEWAY_TOKEN = "gw-secret-token-1234567890"
HOOK_TOKEN = "hook-secret-token-1234567890"
NOTE = "hello from the oracle\n"

_G = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
_H = {"Authorization": f"Bearer {HOOK_TOKEN}"}
_X = {"x-openclaw-token": HOOK_TOKEN}


def _agents(workspace: str) -> dict[str, Any]:
    return {
        "list": [
            {"id": "main", "default": True, "workspace": f"{workspace}/main"},
            {"id": "work", "workspace": f"{workspace}/work", "tools": {"deny": ["read"]}},
            {"id": "other", "workspace": f"{workspace}/other"},
        ]
    }


def config_a(workspace: str) -> dict[str, Any]:
    """Hooks with OpenClaw's defaults (no caller session keys) and mappings; a tool policy."""
    return {
        "gateway": {
            "mode": "local",
            "bind": "loopback",
            "auth": {"mode": "token", "token": GATEWAY_TOKEN},
            "tools": {"deny": ["write"]},
        },
        "tools": {"profile": "coding"},
        "agents": _agents(workspace),
        "hooks": {
            "enabled": True,
            "token": HOOK_TOKEN,
            "allowedAgentIds": ["main", "work"],
            "mappings": [
                {
                    "id": "gh",
                    "match": {"path": "github"},
                    "action": "agent",
                    "agentId": "work",
                    "name": "GitHub",
                    "messageTemplate": "PR {{pull_request.title}} by {{sender.login}}",
                },
                {"match": {"path": "ping"}, "action": "wake", "textTemplate": "ping {{who}}"},
                {"match": {"path": "src", "source": "alpha"}, "messageTemplate": "alpha {{payload.x}}"},
                {"match": {"path": "empty"}, "messageTemplate": "  "},
                {"match": {"path": "nowake"}, "action": "wake", "textTemplate": "{{missing}}"},
                {"match": {"path": "denied"}, "agentId": "other", "messageTemplate": "hi"},
                {"match": {"path": "fan"}, "forEach": "items", "messageTemplate": "item {{items[0].n}}"},
                {"match": {"path": "badchan"}, "channel": "nosuch", "messageTemplate": "hi"},
            ],
        },
    }


def config_b(workspace: str) -> dict[str, Any]:
    """Caller session keys allowed under prefixes, a default key and the gmail preset."""
    return {
        "gateway": {"mode": "local", "bind": "loopback", "auth": {"mode": "token", "token": GATEWAY_TOKEN}},
        "agents": _agents(workspace),
        "hooks": {
            "enabled": True,
            "token": HOOK_TOKEN,
            "path": "/in/",
            "allowRequestSessionKey": True,
            "allowedSessionKeyPrefixes": ["hook:", "agent:"],
            "defaultSessionKey": "hook:default",
            "presets": ["gmail"],
        },
    }


def _case(
    name: str,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: str | None = None,
    compare: str = "exact",
) -> dict[str, Any]:
    return {
        "name": name,
        "method": method,
        "path": path,
        "headers": headers or {},
        "body": raw if raw is not None else (json.dumps(body) if body is not None else ""),
        "compare": compare,
    }


def cases_a() -> list[dict[str, Any]]:
    t = "/tools/invoke"
    return [
        # /tools/invoke: auth
        _case("tools: no auth", t, {"tool": "read"}),
        _case("tools: wrong token", t, {"tool": "read"}, headers={"Authorization": "Bearer nope"}),
        _case("tools: hook token is not the gateway token", t, {"tool": "read"}, headers=_H),
        _case("tools: GET", t, method="GET", headers=_G, compare="text"),
        # /tools/invoke: body
        _case("tools: empty object", t, {}, headers=_G),
        _case("tools: tool not a string", t, {"tool": 5}, headers=_G),
        _case("tools: invalid JSON", t, raw="{bad", headers=_G, compare="status"),
        _case("tools: unknown tool", t, {"tool": "nosuch"}, headers=_G),
        _case("tools: unknown agent", t, {"tool": "read", "agentId": "nosuch"}, headers=_G),
        _case(
            "tools: agent conflicts with session key",
            t,
            {"tool": "read", "agentId": "work", "sessionKey": "agent:main:main"},
            headers=_G,
        ),
        # /tools/invoke: policy
        _case("tools: read", t, {"tool": "read", "args": {"path": "note.txt"}}, headers=_G),
        _case(
            "tools: name wins over tool",
            t,
            {"tool": "exec", "name": "read", "args": {"path": "note.txt"}},
            headers=_G,
        ),
        _case(
            "tools: read in main session",
            t,
            {"tool": "read", "sessionKey": "main", "args": {"path": "note.txt"}},
            headers=_G,
        ),
        _case(
            "tools: exec is on the HTTP deny list", t, {"tool": "exec", "args": {"command": "id"}}, headers=_G
        ),
        _case(
            "tools: write denied by gateway.tools.deny",
            t,
            {"tool": "write", "args": {"path": "x", "content": "y"}},
            headers=_G,
        ),
        _case(
            "tools: read denied by the agent's tools.deny",
            t,
            {"tool": "read", "agentId": "work", "args": {"path": "x"}},
            headers=_G,
        ),
        _case(
            "tools: read denied in that agent's session",
            t,
            {"tool": "read", "sessionKey": "agent:work:main", "args": {"path": "x"}},
            headers=_G,
        ),
        _case("tools: apply_patch on the HTTP deny list", t, {"tool": "apply_patch", "args": {}}, headers=_G),
        # hooks: the HTTP contract
        _case("hooks: GET", "/hooks/wake", method="GET", headers=_H, compare="text"),
        _case("hooks: no token", "/hooks/wake", {"text": "x"}, compare="text"),
        _case(
            "hooks: wrong token",
            "/hooks/wake",
            {"text": "x"},
            headers={"Authorization": "Bearer nope"},
            compare="text",
        ),
        _case(
            "hooks: gateway token is not the hook token",
            "/hooks/wake",
            {"text": "x"},
            headers=_G,
            compare="text",
        ),
        _case(
            "hooks: token in the query",
            "/hooks/wake?token=" + HOOK_TOKEN,
            {"text": "x"},
            headers=_H,
            compare="text",
        ),
        _case("hooks: base path", "/hooks", {"text": "x"}, headers=_H, compare="text"),
        _case("hooks: unknown subpath", "/hooks/nosuch", {"text": "x"}, headers=_H, compare="text"),
        _case("hooks: invalid JSON", "/hooks/wake", raw="{bad", headers=_H, compare="status"),
        _case("hooks: body too large", "/hooks/agent", {"message": "x" * 270_000}, headers=_H),
        # /hooks/wake
        _case("wake: no text", "/hooks/wake", {}, headers=_X),
        _case("wake: empty body", "/hooks/wake", raw="", headers=_H),
        _case("wake: text not a string", "/hooks/wake", {"text": 5}, headers=_H),
        _case("wake: blank text", "/hooks/wake", {"text": "   "}, headers=_H),
        _case("wake: ok", "/hooks/wake", {"text": "build finished"}, headers=_H),
        _case(
            "wake: x-openclaw-token",
            "/hooks/wake",
            {"text": "deploy finished", "mode": "next-heartbeat"},
            headers=_X,
        ),
        _case("wake: unknown agent", "/hooks/wake", {"text": "x", "agentId": "nosuch"}, headers=_H),
        _case("wake: agent not allowed", "/hooks/wake", {"text": "x", "agentId": "other"}, headers=_H),
        _case("wake: agentId not a string", "/hooks/wake", {"text": "x", "agentId": 5}, headers=_H),
        _case("wake: session key refused", "/hooks/wake", {"text": "x", "sessionKey": "hook:x"}, headers=_H),
        _case("wake: blank session key", "/hooks/wake", {"text": "x", "sessionKey": " "}, headers=_H),
        _case(
            "wake: session key with next-heartbeat",
            "/hooks/wake",
            {"text": "x", "sessionKey": "hook:x", "mode": "next-heartbeat"},
            headers=_H,
        ),
        # /hooks/agent
        _case("agent: no message", "/hooks/agent", {"name": "x"}, headers=_H),
        _case(
            "agent: ok",
            "/hooks/agent",
            {"message": "summarise", "name": "Test", "deliver": False},
            headers=_H,
        ),
        _case("agent: to work", "/hooks/agent", {"message": "summarise", "agentId": "work"}, headers=_H),
        _case("agent: unknown agent", "/hooks/agent", {"message": "x", "agentId": "nosuch"}, headers=_H),
        _case("agent: agent not allowed", "/hooks/agent", {"message": "x", "agentId": "other"}, headers=_H),
        _case(
            "agent: agent id not an id", "/hooks/agent", {"message": "x", "agentId": "bad id!"}, headers=_H
        ),
        _case("agent: empty agentId", "/hooks/agent", {"message": "x", "agentId": ""}, headers=_H),
        _case(
            "agent: session key refused",
            "/hooks/agent",
            {"message": "x", "sessionKey": "hook:mine"},
            headers=_H,
        ),
        _case(
            "agent: bad sessionMode", "/hooks/agent", {"message": "x", "sessionMode": "forever"}, headers=_H
        ),
        _case(
            "agent: persistent without key",
            "/hooks/agent",
            {"message": "x", "sessionMode": "persistent"},
            headers=_H,
        ),
        _case(
            "agent: waitForCompletion not boolean",
            "/hooks/agent",
            {"message": "x", "waitForCompletion": "yes"},
            headers=_H,
        ),
        _case("agent: empty model", "/hooks/agent", {"message": "x", "model": ""}, headers=_H),
        _case(
            "agent: channel without to", "/hooks/agent", {"message": "x", "channel": "telegram"}, headers=_H
        ),
        _case("agent: to without channel", "/hooks/agent", {"message": "x", "to": "123"}, headers=_H),
        _case(
            "agent: unknown channel",
            "/hooks/agent",
            {"message": "x", "channel": "nosuch", "to": "1"},
            headers=_H,
        ),
        _case(
            "agent: channel last", "/hooks/agent", {"message": "x", "channel": "last", "to": "1"}, headers=_H
        ),
        _case(
            "agent: blank to", "/hooks/agent", {"message": "x", "channel": "telegram", "to": " "}, headers=_H
        ),
        _case(
            "agent: accountId without channel", "/hooks/agent", {"message": "x", "accountId": "a"}, headers=_H
        ),
        _case(
            "agent: deliver false ignores destination",
            "/hooks/agent",
            {"message": "x", "deliver": False, "channel": "nosuch"},
            headers=_H,
        ),
        _case(
            "agent: odd optional fields are ignored",
            "/hooks/agent",
            {"message": "x", "name": 5, "timeoutSeconds": -3, "thinking": 7},
            headers=_H,
        ),
        # mapped hooks
        _case(
            "mapped: github",
            "/hooks/github",
            {"pull_request": {"title": "Fix"}, "sender": {"login": "ann"}},
            headers=_H,
        ),
        _case("mapped: wake", "/hooks/ping", {"who": "bob"}, headers=_H),
        _case("mapped: source matches", "/hooks/src", {"source": "alpha", "x": 1}, headers=_H),
        _case("mapped: source does not match", "/hooks/src", {"source": "beta"}, headers=_H, compare="text"),
        _case("mapped: blank message", "/hooks/empty", {}, headers=_H),
        _case("mapped: blank wake text", "/hooks/nowake", {}, headers=_H),
        _case("mapped: agent not allowed", "/hooks/denied", {}, headers=_H),
        _case("mapped: fan-out of two", "/hooks/fan", {"items": [{"n": 1}, {"n": 2}]}, headers=_H),
        _case("mapped: fan-out of one", "/hooks/fan", {"items": [{"n": 1}]}, headers=_H),
        _case("mapped: fan-out of none", "/hooks/fan", {"items": []}, headers=_H),
        _case("mapped: fan-out without the array", "/hooks/fan", {"items": "x"}, headers=_H),
        _case("mapped: unknown channel", "/hooks/badchan", {}, headers=_H),
        _case(
            "mapped: gmail preset not configured",
            "/hooks/gmail",
            {"messages": []},
            headers=_H,
            compare="text",
        ),
    ]


def cases_b() -> list[dict[str, Any]]:
    return [
        _case("b: hooks under the configured path", "/in/wake", {"text": "x"}, headers=_H),
        _case(
            "b: /hooks is not the path any more", "/hooks/wake", {"text": "x"}, headers=_H, compare="status"
        ),
        _case(
            "b: session key under a prefix",
            "/in/agent",
            {"message": "x", "sessionKey": "hook:mine"},
            headers=_H,
        ),
        _case(
            "b: session key outside the prefixes",
            "/in/agent",
            {"message": "x", "sessionKey": "other:mine"},
            headers=_H,
        ),
        _case(
            "b: agent-scoped session key",
            "/in/agent",
            {"message": "x", "sessionKey": "agent:work:hook:z"},
            headers=_H,
        ),
        _case(
            "b: persistent",
            "/in/agent",
            {"message": "x", "sessionKey": "hook:p", "sessionMode": "persistent"},
            headers=_H,
        ),
        _case("b: wake with a session key", "/in/wake", {"text": "x", "sessionKey": "hook:w"}, headers=_H),
        _case(
            "b: wake session key outside the prefixes",
            "/in/wake",
            {"text": "x", "sessionKey": "zzz"},
            headers=_H,
        ),
        _case(
            "b: gmail preset",
            "/in/gmail",
            {"messages": [{"id": "m1", "from": "a@x", "subject": "Hi", "snippet": "s", "body": "b"}]},
            headers=_H,
        ),
        _case(
            "b: gmail preset, two messages",
            "/in/gmail",
            {"messages": [{"id": "m2", "subject": "A"}, {"id": "m3", "subject": "B"}]},
            headers=_H,
        ),
        _case("b: gmail preset, no messages", "/in/gmail", {"messages": []}, headers=_H),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "runId" and isinstance(item, str):
                out[key] = "<id>"
            elif key == "runIds" and isinstance(item, list):
                out[key] = ["<id>"] * len(item)
            else:
                out[key] = _normalise(item)
        return out
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _answer(resp: httpx.Response) -> dict[str, Any]:
    kind = resp.headers.get("content-type", "").split(";")[0].strip()
    out: dict[str, Any] = {"status": resp.status_code}
    for name in ("allow", "retry-after"):
        if name in resp.headers:
            out[name] = resp.headers[name]
    if kind == "application/json":
        out["json"] = _normalise(resp.json())
    elif resp.content:
        out["text"] = resp.text
    return out


def _record(config: dict[str, Any], cases: list[dict[str, Any]], home: Path, extra: list[Any]) -> None:
    state = home / ".openclaw"
    state.mkdir(parents=True, exist_ok=True)
    (state / "openclaw.json").write_text(json.dumps(config, indent=2))
    port = _free_port()
    binary = oracle_dir() / "node_modules" / ".bin" / "openclaw"
    log = (home / "gateway.log").open("w")
    proc = subprocess.Popen(
        [str(binary), "gateway", "run", "--port", str(port)],
        env=oracle_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    client.post("/tools/invoke", content=b"{}")
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the gateway did not start; see {home / 'gateway.log'}") from None
                    time.sleep(0.5)
            for case in cases:
                resp = client.request(
                    case["method"],
                    case["path"],
                    content=case["body"].encode(),
                    headers={"Content-Type": "application/json", **case["headers"]},
                )
                case["response"] = _answer(resp)
                print(f"{resp.status_code} {case['name']}", file=sys.stderr)
            for step in extra:
                step(client, cases)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _rate_limit(client: httpx.Client, cases: list[dict[str, Any]]) -> None:
    """20 failed hook authentications in a minute: the 21st is throttled; a valid token is not."""
    bad = _case(
        "hooks: 21st failed authentication",
        "/hooks/wake",
        {"text": "x"},
        headers={"x-openclaw-token": "nope"},
        compare="text",
    )
    good = _case("hooks: valid token while throttled", "/hooks/wake", {"text": "x"}, headers=_H)
    for _ in range(20):
        client.post("/hooks/wake", json={"text": "x"}, headers=bad["headers"])
    for case in (bad, good):
        resp = client.post(case["path"], content=case["body"].encode(), headers=case["headers"])
        case["response"] = _answer(resp)
        cases.append(case)


def main() -> None:
    oracle_dir()
    with tempfile.TemporaryDirectory(prefix="openclaw-hooks-") as tmp:
        home = Path(tmp)
        workspace = str(home / "ws")
        for agent in ("main", "work", "other"):
            (home / "ws" / agent).mkdir(parents=True)
        (home / "ws" / "main" / "note.txt").write_text(NOTE)
        a, b = cases_a(), cases_b()
        _record(config_a(workspace), a, home / "a", [_rate_limit])
        _record(config_b(workspace), b, home / "b", [])
        doc = {
            "openclaw": ORACLE_VERSION,
            "generatedBy": "scripts/oracle/http_hooks.py",
            "gatewayToken": GATEWAY_TOKEN,
            "hookToken": HOOK_TOKEN,
            "note": NOTE,
            "workspace": workspace,
            "configs": {"a": config_a(workspace), "b": config_b(workspace)},
            "cases": {"a": a, "b": b},
        }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(a) + len(b)} requests", file=sys.stderr)


if __name__ == "__main__":
    main()
