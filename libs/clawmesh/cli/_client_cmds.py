"""Commands that talk to a running gateway: send, chat, status, sessions, config reload."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from ..safetext import for_terminal
from ._common import console, err_console, fail, load, parse_peer, print_json
from ._lazy import LazyCommand, lazy_group
from ._remote import api_base, api_token, expected_services, nats_client, scatter_gather

_CLEANUP = LazyCommand(
    "clawmesh.cli._sessions_cleanup:cleanup",
    "Run session-store maintenance now (session.maintenance: pruneAfter, maxEntries, mode).",
)
sessions_app = typer.Typer(
    help="List, show and export sessions (transcripts live in JetStream).",
    no_args_is_help=True,
    cls=lazy_group({"cleanup": _CLEANUP}),
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--url", help="Gateway HTTP URL (default: $CLAWMESH_GATEWAY_URL or http://127.0.0.1:<gateway.port>)."
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", help="API token (default: gateway.auth.token, $CLAWMESH_GATEWAY_TOKEN or the state dir's)."
    ),
]


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _message(
    text: str, agent: str | None, channel: str | None, account: str | None, peer: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if agent:
        body["agentId"] = agent
    if channel:
        body["channel"] = channel
    if account:
        body["accountId"] = account
    body["peer"] = parse_peer(peer) or {"kind": "direct", "id": f"cli-{getpass.getuser()}"}
    return body


def stream_turn(
    base: str, token: str | None, body: dict[str, Any], *, as_json: bool = False, prefix: str = ""
) -> int:
    """POST the message and print the streamed reply; exit status 0 on a final reply."""
    import httpx  # only the commands that talk HTTP pay for it

    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    printed = False
    # the reply as it is into a pipe or file; into a terminal with its control characters
    # escaped (a model can be made to answer with escape sequences)
    shown = for_terminal if sys.stdout.isatty() else str
    try:
        with httpx.stream(
            "POST", f"{base}/v1/messages", json=body, headers=headers, timeout=httpx.Timeout(10.0, read=None)
        ) as resp:
            if resp.status_code != 200:
                resp.read()
                try:
                    err = resp.json().get("error", {})
                    detail = f"{err.get('code')}: {err.get('message')}" + (
                        f" ({err['hint']})" if err.get("hint") else ""
                    )
                except Exception:
                    detail = resp.text[:300]
                err_console.print(f"error: HTTP {resp.status_code}: {detail}", markup=False)
                return 1
            for event, data in _sse(resp.iter_lines()):
                if as_json:
                    print(json.dumps({"event": event, "data": json.loads(data)}), flush=True)
                payload = json.loads(data) if data else {}
                if event == "route" and payload.get("errorCode"):
                    if not as_json:
                        hint = payload.get("errorHint")
                        err_console.print(
                            f"error: {payload['errorCode']}: {payload.get('errorMessage')}"
                            + (f" ({hint})" if hint else ""),
                            markup=False,
                        )
                    return 1
                if as_json:
                    if event in ("final", "error"):
                        return 0 if event == "final" else 1
                    continue
                if event == "delta":
                    if not printed and prefix:
                        sys.stdout.write(prefix)
                    sys.stdout.write(shown(payload.get("text", "")))
                    sys.stdout.flush()
                    printed = True
                elif event == "failover":
                    err_console.print(
                        f"↪ failed over from {payload.get('fromModel')} to {payload.get('toModel')}: {payload.get('reason')}",
                        markup=False,
                    )
                elif event == "tool_call":
                    err_console.print(
                        f"⚙ {payload.get('name')} {json.dumps(payload.get('arguments', {}))[:200]}",
                        markup=False,
                    )
                elif event == "exec.approval.requested":
                    err_console.print(
                        f"⏸ {payload.get('command')!r} waits for approval: clawmesh approvals approve "
                        f"{payload.get('approvalId')} [--always] | deny {payload.get('approvalId')}",
                        markup=False,
                    )
                elif event == "exec.approval.resolved":
                    err_console.print(
                        f"▶ approval {payload.get('approvalId')}: {payload.get('decision')}", markup=False
                    )
                elif event == "final":
                    if not printed:
                        sys.stdout.write(prefix + shown(payload.get("text", "")))
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                    return 0
                elif event == "error":
                    if printed:
                        sys.stdout.write("\n")
                    err_console.print(f"error: {payload.get('code')}: {payload.get('message')}", markup=False)
                    return 1
                elif event == "queued":
                    err_console.print(
                        "(queued: no router answered yet; the reply will come when one does)", markup=False
                    )
    except httpx.ConnectError:
        fail(f"cannot reach the gateway at {base}; start it with `clawmesh up` (or pass --url)")
    except httpx.HTTPError as exc:
        fail(f"HTTP error talking to {base}: {exc}")
    err_console.print("error: the stream ended without a reply", markup=False)
    return 1


def check_agent(base: str, token: str | None, agent: str | None) -> str | None:
    """The id of `agent` (None: the default agent) as the gateway knows it; a clear error, with
    the closest id, for one it does not know (instead of a message the router dead-letters).
    None when the gateway cannot say (it then decides, as before)."""
    import difflib

    import httpx

    from ..routing import normalize_agent_id

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(f"{base}/v1/agents", headers=headers, timeout=10.0)
    except httpx.ConnectError:
        fail(f"cannot reach the gateway at {base}; start it with `clawmesh up` (or pass --url)")
    except httpx.HTTPError as exc:
        fail(f"HTTP error talking to {base}: {exc}")
    if resp.status_code == 401:
        fail(
            f"the gateway at {base} refused the token (HTTP 401); pass --token or set CLAWMESH_GATEWAY_TOKEN"
        )
    try:
        body = resp.json() if resp.status_code == 200 else {}
        ids = [str(a["id"]) for a in body.get("agents", [])]
        default = next((str(a["id"]) for a in body.get("agents", []) if a.get("default")), None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return agent
    if agent is None:
        return default
    wanted = normalize_agent_id(agent)
    if agent in ids or wanted in ids:
        return agent if agent in ids else wanted
    if not body.get("roster", True) or not ids:
        return agent
    close = difflib.get_close_matches(wanted, ids, n=1, cutoff=0.5)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    fail(f"unknown agent '{agent}' ({suggestion}configured: {', '.join(ids)})")


def send(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The message.")],
    agent: Annotated[
        str | None, typer.Option("--agent", help="Send to this agent (bindings are skipped).")
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Channel to present the message on (default: api).")
    ] = None,
    account: Annotated[str | None, typer.Option("--account", help="Channel account id.")] = None,
    peer: Annotated[str | None, typer.Option("--peer", help="kind:id (default: direct:cli-<user>).")] = None,
    url: ApiUrl = None,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every event as a JSON line.")] = False,
) -> None:
    """Send one message and print the streamed reply."""
    config = load(ctx)
    base, tok = api_base(config, url), api_token(config, token)
    if agent is not None:
        agent = check_agent(base, tok, agent)
    code = stream_turn(
        base,
        tok,
        _message(text, agent, channel, account, peer),
        as_json=as_json,
    )
    raise typer.Exit(code)


def chat(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Talk to this agent.")] = None,
    peer: Annotated[str | None, typer.Option("--peer", help="kind:id (default: direct:cli-<user>).")] = None,
    url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Interactive chat (one line per message; /exit or Ctrl-D to leave). With stdin not a
    terminal each input line is one message, without prompts; exit status 1 if a turn failed."""
    config = load(ctx)
    base, tok = api_base(config, url), api_token(config, token)
    name = check_agent(base, tok, agent)
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        shown = name or agent or "the default agent"
        console.print(f"chatting with {shown} at {base} — /exit or Ctrl-D to leave", markup=False)
    prompt, prefix = ("you> ", f"{name or 'agent'}> ") if interactive else ("", "")
    failed = False
    while True:
        try:
            line = input(prompt)
        except (EOFError, KeyboardInterrupt):
            if interactive:
                print()
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip():
            code = stream_turn(base, tok, _message(line, agent, None, None, peer), prefix=prefix)
            failed = failed or code != 0
    raise typer.Exit(1 if failed else 0)


def status(
    ctx: typer.Context,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Services found through $SRV (versions, request counts), NATS and stream health."""
    from ..execpolicy import ApprovalsFile, exposure_line, unapproved_host_exec

    config = load(ctx)
    result = asyncio.run(_status(config, nats_url))
    # From this machine's config and approvals document: a node elsewhere may differ.
    approvals, euid = ApprovalsFile(config.state_dir), os.geteuid()
    result["hostExec"] = {
        "unapproved": [
            {"agentId": e.agent_id, "runsAs": e.runs_as}
            for e in unapproved_host_exec(config, approvals, euid=euid)
        ]
    }
    if as_json:
        print_json(result)
        return
    console.print(f"host exec {exposure_line(config, approvals, euid=euid)}", markup=False)
    console.print(
        f"NATS {result['nats']['url']}  rtt {result['nats']['rttMs']:.2f} ms  server {result['nats']['server']}",
        markup=False,
    )
    if "federation" in result:
        console.print(federation_line(result["federation"]), markup=False)
    table = Table(
        "service", "instance", "version", "requests", "errors", "details", box=None, header_style="bold"
    )
    for svc in result["services"]:
        table.add_row(
            svc["name"], svc["id"], svc["version"], str(svc["requests"]), str(svc["errors"]), svc["details"]
        )
    console.print(table)
    if not result["services"]:
        console.print("no clawmesh services answered on $SRV", markup=False)
    streams = Table("stream", "messages", "bytes", "consumers", box=None, header_style="bold")
    for s in result["streams"]:
        streams.add_row(s["name"], str(s["messages"]), str(s["bytes"]), str(s["consumers"]))
    console.print(streams)


def federation_line(fed: dict[str, Any]) -> str:
    """One line on this gateway's place in its federation: region, leaf link, topology."""
    line = f"federation region {fed.get('region')}"
    link = fed.get("link")
    if link is None:
        return line + "  (link state unknown: NATS is not clawmesh's embedded server)"
    if link.get("loop"):
        return (
            line
            + f"  TOPOLOGY LOOP: {link['loop']} (a region must join the hub once; see docs/federation.md)"
        )
    if link.get("links", 0) > 0:
        return line + f"  link to the hub up ({link['links']})"
    reason = f" (last: {link['lastClose']})" if link.get("lastClose") else ""
    return line + f"  link to the hub DOWN{reason}: other regions are unreachable, local traffic is served"


async def _status(config: Any, url: str | None) -> dict[str, Any]:
    async with nats_client(config, url) as nc:
        rtt = await nc.rtt() if hasattr(nc, "rtt") else 0.0
        expected = {f"clawmesh-{name}" for name in expected_services(config)}

        def answered(replies: list[dict[str, Any]]) -> bool:
            return expected <= {r.get("name") for r in replies}

        info_replies, stats = await asyncio.gather(
            scatter_gather(nc, "$SRV.INFO", done=answered), scatter_gather(nc, "$SRV.STATS", done=answered)
        )
        infos = {i.get("id"): i for i in info_replies}
        services = []
        federation: dict[str, Any] | None = None
        for st in sorted(stats, key=lambda s: (s.get("name", ""), s.get("id", ""))):
            if not st.get("name", "").startswith("clawmesh-"):
                continue
            eps = st.get("endpoints") or []
            data: dict[str, Any] = next((e.get("data") for e in eps if e.get("data")), {}) or {}
            counters = data.get("counters", {})
            details = ", ".join(
                f"{k}={v}"
                for k, v in {**counters, **{k: v for k, v in data.items() if k != "counters"}}.items()
            )
            if data.get("region") and federation is None:
                federation = {"region": data["region"], **({"link": data["link"]} if "link" in data else {})}
            services.append(
                {
                    "name": st["name"],
                    "id": st.get("id", ""),
                    "version": st.get("version", ""),
                    "requests": sum(e.get("num_requests", 0) for e in eps),
                    "errors": sum(e.get("num_errors", 0) for e in eps),
                    "details": details,
                    "metadata": infos.get(st.get("id", ""), {}).get("metadata", {}),
                }
            )
        js = nc.jetstream()
        streams = []
        try:
            for info in await js.streams_info():
                streams.append(
                    {
                        "name": info.config.name,
                        "messages": info.state.messages,
                        "bytes": info.state.bytes,
                        "consumers": info.state.consumer_count,
                    }
                )
        except Exception as exc:
            streams.append(
                {"name": f"(JetStream unavailable: {exc})", "messages": 0, "bytes": 0, "consumers": 0}
            )
        return {
            "nats": {
                "url": nc.connected_url.netloc if nc.connected_url else "",
                "rttMs": rtt * 1000,
                "server": nc._server_info.get("version", ""),
            },
            "services": services,
            "streams": streams,
            **({"federation": federation} if federation else {}),
        }


def config_reload(ctx: typer.Context, nats_url: NatsUrl = None) -> None:
    """Ask every running service to reload its config file (invalid files are refused, the old config stays)."""
    config = load(ctx)

    async def run() -> list[dict[str, Any]]:
        async with nats_client(config, nats_url) as nc:
            from ..wire import Subjects

            expected = expected_services(config)
            return await scatter_gather(
                nc,
                Subjects(config.subject_prefix).control("config.reload"),
                wait=1.0,
                done=lambda replies: expected <= {r.get("service") for r in replies},
            )

    replies = asyncio.run(run())
    if not replies:
        fail("no service answered the reload request; is the gateway running?")
    bad = 0
    for r in sorted(replies, key=lambda r: (r.get("service", ""), r.get("instance", ""))):
        if r.get("ok"):
            note = "reloaded" if r.get("changed") else "unchanged"
            console.print(
                f"{r['service']:<10} {r['instance']}  {note} (version {r['version']})", markup=False
            )
        else:
            bad += 1
            console.print(
                f"{r['service']:<10} {r['instance']}  REFUSED, keeping version {r['version']}:", markup=False
            )
            for e in r.get("errors", []):
                console.print(f"    {e}", markup=False)
    raise typer.Exit(1 if bad else 0)


# --- sessions --------------------------------------------------------------------------------


def _store(nc: Any, config: Any) -> Any:
    from ..sessions import SessionStore
    from ..wire import Subjects

    subjects = Subjects(config.subject_prefix)
    js = nc.jetstream()

    async def make() -> Any:
        sessions = await js.key_value(subjects.bucket("sessions"))
        return SessionStore(js, subjects, sessions)

    return make()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's sessions.")] = None,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sessions, most recently active first."""
    config = load(ctx)

    async def run() -> list[dict[str, Any]]:
        async with nats_client(config, nats_url) as nc:
            store = await _store(nc, config)
            rows = []
            spawns = {r.child_session_key: r for r in await store.list_spawns()}
            for rec in await store.list_sessions():
                if agent and rec.agent_id != agent:
                    continue
                done = await store.get_done(rec.session_key)
                rows.append(
                    {
                        "sessionKey": rec.session_key,
                        "agentId": rec.agent_id,
                        "sessionId": rec.session_id,
                        "turns": done[0].seq if done else 0,
                        "queued": rec.seq - (done[0].seq if done else 0),
                        "channel": rec.channel,
                        "updatedAt": _iso(max(rec.updated_at, done[0].updated_at if done else 0)),
                    }
                )
                spawn = spawns.get(rec.session_key)
                if spawn is not None:
                    rows[-1].update(
                        parentSessionKey=spawn.parent_session_key, label=spawn.label, status=spawn.status
                    )
            return _as_tree(sorted(rows, key=lambda r: r["updatedAt"], reverse=True))

    rows = asyncio.run(run())
    if as_json:
        print_json(rows)
        return
    table = Table("session", "agent", "turns", "queued", "channel", "updated", box=None, header_style="bold")
    for r in rows:
        depth = r.get("depth", 0)
        key = ("   " * (depth - 1) + "└─ " if depth else "") + r["sessionKey"]
        if r.get("status"):
            key += f"  [{r['status']}{': ' + r['label'] if r.get('label') else ''}]"
        table.add_row(key, r["agentId"], str(r["turns"]), str(r["queued"]), r["channel"], r["updatedAt"])
    console.print(table, markup=False)


def _as_tree(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each spawned session right under its parent (depth set), in the order given otherwise.
    A child whose parent is not listed (another agent filtered out, or gone) is a root."""
    keys = {r["sessionKey"] for r in rows}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for r in rows:
        parent = r.get("parentSessionKey")
        if isinstance(parent, str) and parent in keys and parent != r["sessionKey"]:
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[dict[str, Any]] = []

    def walk(r: dict[str, Any], depth: int) -> None:
        if depth:
            r["depth"] = depth
        out.append(r)
        for child in children.get(r["sessionKey"], []):
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    return out


@sessions_app.command("stop")
def sessions_stop(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Session key (agent:<id>:…).")],
    cascade: Annotated[
        bool, typer.Option("--cascade/--no-cascade", help="Also stop the sub-agent runs it spawned.")
    ] = True,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop the session's running turn and (by default) every sub-agent run it spawned, at any
    depth. A stopped run ends with TURN_STOPPED and its announce says so."""
    from ..sessions import stop_session
    from ..wire import Subjects

    config = load(ctx)

    async def run() -> list[str]:
        async with nats_client(config, nats_url) as nc:
            store = await _store(nc, config)
            subject = Subjects(config.subject_prefix).stop
            return await stop_session(
                store, nc.publish, subject, key, reason="clawmesh sessions stop", cascade=cascade
            )

    stopped = asyncio.run(run())
    if as_json:
        print_json({"stopped": stopped})
        return
    console.print(f"stop requested for {len(stopped)} session(s):", markup=False)
    for k in stopped:
        console.print(f"  {k}", markup=False)


@sessions_app.command("history")
def sessions_history(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Session key (agent:<id>:…).")],
    limit: Annotated[int | None, typer.Option("--limit", help="Only the last N records.")] = None,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A session's transcript."""
    from ..routing import parse_agent_session_key

    parsed = parse_agent_session_key(key)
    if parsed is None:
        fail(f"not a session key: {key!r} (expected agent:<agentId>:…)", 2)
    config = load(ctx)

    async def run() -> list[Any]:
        async with nats_client(config, nats_url) as nc:
            store = await _store(nc, config)
            return list(await store.history(parsed.agent_id, key, limit=limit))

    entries = asyncio.run(run())
    if not entries:
        fail(f"no transcript for {key} (see `clawmesh sessions list`)")
    if as_json:
        print_json([msgspec.to_builtins(e) for e in entries])
        return
    for e in entries:
        role = type(e).__struct_config__.tag
        if role == "user":
            console.print(f"[{_iso(e.ts)}] user: {e.text}", markup=False)
        elif role == "assistant":
            calls = "".join(f"\n    ⚙ {c['name']} {json.dumps(c.get('arguments', {}))}" for c in e.tool_calls)
            console.print(f"[{_iso(e.ts)}] assistant ({e.model}): {e.text}{calls}", markup=False)
        elif role == "tool":
            console.print(
                f"[{_iso(e.ts)}] tool {e.name}{' (error)' if e.is_error else ''}: {e.content[:500]}",
                markup=False,
            )
        else:
            console.print(f"[{_iso(e.ts)}] error {e.code}: {e.message}", markup=False)


class _UnsafeExport(ValueError):
    """A stored id that would put an exported file outside the target directory."""


def _path_part(value: str, what: str) -> str:
    """`value` as one file name, or `_UnsafeExport` naming what is wrong with it."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise _UnsafeExport(f"{what} {value!r} cannot be a file name (path separators, '..' or empty)")
    return value


def _export_path(directory: Path, agent_id: str, file_name: str) -> Path:
    """<DIR>/agents/<agent>/sessions/<file>, refused unless it stays inside DIR (symlinks resolved)."""
    path = directory / "agents" / _path_part(agent_id, "agent id") / "sessions" / file_name
    root = directory.resolve()
    if not path.resolve().is_relative_to(root):
        raise _UnsafeExport(f"{path} would be outside {root}")
    return path


@sessions_app.command("export")
def sessions_export(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Target directory (OpenClaw layout: agents/<id>/sessions/).")
    ],
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's sessions.")] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Write each session as OpenClaw-style JSONL: <DIR>/agents/<id>/sessions/<sessionId>.jsonl + sessions.json.

    What OpenClaw's importer (`openclaw doctor --session-sqlite import`) reads: assistant
    messages with api, provider, model, usage and stopReason, failed turns as error messages,
    and sessions.json entries with model and token totals.

    A session whose stored ids cannot be used as file names inside DIR is skipped with a
    message (exit status 1 at the end); the others are still exported."""
    from ..migrate import openclaw_index_entry, openclaw_jsonl

    config = load(ctx)

    async def run() -> tuple[int, int]:
        async with nats_client(config, nats_url) as nc:
            store = await _store(nc, config)
            count = skipped = 0
            indexes: dict[str, dict[str, Any]] = {}
            for rec in await store.list_sessions():
                if agent and rec.agent_id != agent:
                    continue
                try:
                    path = _export_path(
                        directory, rec.agent_id, _path_part(rec.session_id, "session id") + ".jsonl"
                    )
                    entries = list(await store.history(rec.agent_id, rec.session_key))
                    view = config.agent_view(rec.agent_id)
                    lines = openclaw_jsonl(rec.session_id, entries, str(view.workspace) if view else "")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(
                        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                        encoding="utf-8",
                    )
                except (_UnsafeExport, OSError, ValueError) as exc:
                    skipped += 1
                    err_console.print(
                        f"skipped session {rec.session_key!r}: {exc}", markup=False, emoji=False
                    )
                    continue
                indexes.setdefault(rec.agent_id, {})[rec.session_key] = openclaw_index_entry(
                    rec.session_id,
                    entries,
                    updated_at=max(rec.updated_at, entries[-1].ts if entries else 0.0),
                    session_file=str(path),
                    channel=rec.channel,
                    account_id=rec.account_id,
                    peer=msgspec.to_builtins(rec.peer) if rec.peer else None,
                )
                count += 1
                console.print(
                    f"{rec.session_key} → {path} ({len(lines) - 1} messages)", markup=False, emoji=False
                )
            for agent_id, index in indexes.items():
                _export_path(directory, agent_id, "sessions.json").write_text(
                    json.dumps(index, indent=2) + "\n"
                )
            return count, skipped

    count, skipped = asyncio.run(run())
    console.print(f"exported {count} session(s) to {directory}", markup=False)
    if skipped:
        fail(f"{skipped} session(s) could not be exported (see above)", 1)
