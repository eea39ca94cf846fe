"""`clawmesh channels list|status|add|remove` (OpenClaw's `openclaw channels`, its flags).

`list` and `add`/`remove` read and write the config only. `status` asks every ingress instance
over NATS what its channel adapters are doing, and falls back to a config-only summary when no
ingress answers; `--probe` checks each account's credentials against the platform itself
(Telegram `getMe` at the account's `apiRoot`, Discord `GET /users/@me` at its REST base, Slack
`auth.test` and in Socket Mode `apps.connections.open` at `apiBaseUrl`, WhatsApp the Graph API's
phone number object; channels without an adapter say "probe not available"). What ingress
says of an account includes its connection (Slack's Socket Mode: `connection` connecting,
connected, reconnecting or stopped, and the `error` that stopped it). Credentials come from
flags, files or the environment and are never printed: output names only where a credential
comes from (`config`, `file`, `env`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from ..config import Config
from ._common import CliError, config_file, console, fail, load, print_json

app = typer.Typer(
    help="Chat channel accounts: list, status (with live probes), add, remove.", no_args_is_help=True
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
    ),
]

LABELS: Final = {"telegram": "Telegram", "slack": "Slack", "discord": "Discord", "whatsapp": "WhatsApp"}
# channels whose ingress adapter exists in this version
ADAPTERS: Final = frozenset({"telegram", "slack", "whatsapp", "discord"})
# `--use-env`: the variables each channel reads for its default account
ENV_TOKENS: Final = {
    "telegram": {"botToken": "TELEGRAM_BOT_TOKEN"},
    "discord": {"token": "DISCORD_BOT_TOKEN"},
    "slack": {"botToken": "SLACK_BOT_TOKEN", "appToken": "SLACK_APP_TOKEN"},
}
# keys that belong to one account: moved into `accounts.default` when a second account is added
_ACCOUNT_KEYS: Final = (
    "name",
    "botToken",
    "token",
    "tokenFile",
    "appToken",
    "userToken",
    "signingSecret",
    "webhookUrl",
    "webhookSecret",
    "webhookPath",
)
_CREDENTIAL_KEYS: Final = ("tokenFile", "botToken", "token", "appToken", "userToken", "signingSecret")


def _label(channel: str) -> str:
    return LABELS.get(channel, channel[:1].upper() + channel[1:])


def _account_opt(value: str | None) -> str:
    from ..ids import normalize_account_id

    if value is not None and not value.strip():
        fail("--account must not be blank", 2)
    return normalize_account_id(value)


# --- what the config says -------------------------------------------------------------------


def _credentials(channel: str, settings: Any, account_id: str) -> str:
    """Where the account's credential comes from: file, config, env, or none (never its value)."""
    from ..ids import DEFAULT_ACCOUNT_ID

    if getattr(settings, "token_file", None):
        return "file"
    if any(
        getattr(settings, f, None)
        for f in ("bot_token", "token", "app_token", "signing_secret", "access_token")
    ):
        return "config"
    if account_id == DEFAULT_ACCOUNT_ID and any(
        os.environ.get(v) for v in ENV_TOKENS.get(channel, {}).values()
    ):
        return "env"
    return "none"


def _inventory(config: Config) -> dict[str, list[dict[str, Any]]]:
    from ..channels.accounts import channel_accounts

    channels = config.document.channels or {}
    out: dict[str, list[dict[str, Any]]] = {}
    for channel in sorted(k for k in channels if k != "defaults"):
        rows = []
        for account in channel_accounts(channels, channel):
            source = _credentials(channel, account.settings, account.account_id)
            rows.append(
                {
                    "accountId": account.account_id,
                    "name": account.settings.name,
                    "default": account.is_default,
                    "enabled": account.enabled,
                    "configured": source != "none" or channel == "whatsapp",
                    "credentials": source,
                }
            )
        out[channel] = rows
    return out


@app.command("list")
def channels_list(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also channels clawmesh has an adapter for but are not configured.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Configured chat channels and their accounts (from the config; no gateway needed)."""
    config = load(ctx)
    inventory = _inventory(config)
    if show_all:
        for channel in sorted(ADAPTERS):
            inventory.setdefault(channel, [])
    if as_json:
        print_json(
            {
                "chat": {
                    ch: {
                        "label": _label(ch),
                        "adapter": ch in ADAPTERS,
                        "origin": "configured" if rows else "available",
                        "accounts": rows,
                    }
                    for ch, rows in inventory.items()
                }
            }
        )
        return
    if not inventory:
        console.print(
            "No chat channels configured (clawmesh channels add --channel telegram --use-env).", markup=False
        )
        return
    console.print("Chat channels:", markup=False)
    for channel, rows in inventory.items():
        adapter = "adapter" if channel in ADAPTERS else "no adapter in this version"
        if not rows:
            console.print(f"- {_label(channel)}: {adapter}, not configured", markup=False)
        for row in rows:
            state = "enabled" if row["enabled"] else "disabled"
            configured = "configured" if row["configured"] else "not configured"
            console.print(
                f"- {_label(channel)} {row['accountId']}: {adapter}, {configured}, {state}, token={row['credentials']}",
                markup=False,
            )


# --- status ---------------------------------------------------------------------------------


async def _ingress_status(config: Config, url: str | None) -> list[dict[str, Any]] | None:
    """Every ingress instance's status, or None when NATS or ingress cannot be reached."""
    from ..wire import Subjects
    from ._remote import nats_client, scatter_gather

    try:
        async with nats_client(config, url) as nc:
            replies = await scatter_gather(nc, Subjects(config.subject_prefix).status("ingress"), wait=1.0)
    except CliError:
        return None
    return replies or None


def _probe_telegram(config: Config, account: Any, timeout: float) -> dict[str, Any]:
    import httpx

    from ..channels.telegram import DEFAULT_API_ROOT, resolve_token
    from ..config import ConfigError

    try:
        token = resolve_token(account.settings, account.account_id, config.env, account.path)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(p) for p in exc.problems)}
    if not token:
        return {
            "ok": False,
            "error": "no bot token (botToken, tokenFile, or TELEGRAM_BOT_TOKEN for the default account)",
        }
    root = (account.settings.api_root or DEFAULT_API_ROOT).rstrip("/")
    try:
        response = httpx.get(f"{root}/bot{token}/getMe", timeout=timeout)
    except httpx.HTTPError as exc:
        # the exception text carries the URL, and the URL the token: report the kind only
        return {"ok": False, "error": f"{type(exc).__name__} talking to {root}"}
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and body.get("ok") is True:
        user = body.get("result") or {}
        return {"ok": True, "bot": {"id": user.get("id"), "username": user.get("username")}, "apiRoot": root}
    description = body.get("description") if isinstance(body, dict) else None
    return {
        "ok": False,
        "error": f"HTTP {response.status_code}: {description or 'unexpected answer'}",
        "apiRoot": root,
    }


def _probe_discord(config: Config, account: Any, timeout: float) -> dict[str, Any]:
    import httpx

    from ..channels.discord import api_base_url, resolve_token
    from ..config import ConfigError

    try:
        token = resolve_token(account.settings, account.account_id, config.env, account.path)
        base = api_base_url(account.settings, config.env, account.path)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(p) for p in exc.problems)}
    if not token:
        return {"ok": False, "error": "no bot token (token, or DISCORD_BOT_TOKEN for the default account)"}
    try:
        # the token only in the header: neither the URL nor an error message carries it
        response = httpx.get(
            f"{base}/users/@me", headers={"authorization": f"Bot {token}"}, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError as exc:
        return {"ok": False, "error": f"{type(exc).__name__} talking to {base}"}
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and isinstance(body, dict) and body.get("id"):
        return {
            "ok": True,
            "bot": {"id": body.get("id"), "username": body.get("username")},
            "apiBaseUrl": base,
        }
    message = body.get("message") if isinstance(body, dict) else None
    return {
        "ok": False,
        "error": f"HTTP {response.status_code}: {message or 'unexpected answer'}",
        "apiBaseUrl": base,
    }


def _bad_base(base: str, where: str) -> str | None:
    """Why `base` is no URL to probe (as ingress refuses it), or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(base)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        usable = False
    return None if usable else f"{where}: expected an http(s) URL, got {base!r}"


def _no_answer(exc: Exception, base: str, timeout: float) -> str:
    """A request that got no answer, by kind only (an exception's text may carry a URL)."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {round(timeout * 1000)} ms talking to {base}"
    return f"{type(exc).__name__} talking to {base}"


def _scrub(text: str, *secrets: str) -> str:
    """A server's error text with any credential cut out, should one be echoed back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return text


def _slack_call(
    client: Any, base: str, method: str, token: str, timeout: float, secrets: tuple[str, ...]
) -> dict[str, Any]:
    """`{"ok": True, "body": …}` when Slack answered `ok: true`, else `{"ok": False, "error",
    "errorCode" (Slack's code, when it gave one), "answered"}`. The token goes in the
    Authorization header only; Slack answers a refused one with HTTP 200 and `ok: false`."""
    import httpx

    try:
        response = client.post(
            f"{base}/{method}",
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/x-www-form-urlencoded",
            },
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return {"ok": False, "error": f"{method}: {_no_answer(exc, base, timeout)}", "answered": False}
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if not isinstance(body, dict):
        return {
            "ok": False,
            "error": f"{method}: HTTP {status}: not a Slack Web API answer",
            "answered": True,
        }
    if status == 200 and body.get("ok") is True:
        return {"ok": True, "body": body}
    code = body.get("error")
    code = _scrub(code, *secrets) if isinstance(code, str) and code else None
    error = f"{method}: {code or 'unexpected answer'}" + ("" if status == 200 else f" (HTTP {status})")
    return {"ok": False, "error": error, **({"errorCode": code} if code else {}), "answered": True}


def _probe_slack(config: Config, account: Any, timeout: float) -> dict[str, Any]:
    """OpenClaw's Slack probe (`auth.test` with the bot token: `bot` and `team` as it shapes
    them, Slack's `errorCode`), plus, in Socket Mode, the app token checked with
    `apps.connections.open`: its answer is a single-use WebSocket URL, left unused to expire
    and never shown."""
    import httpx

    from ..channels.slack import DEFAULT_API_BASE_URL, resolve_credentials
    from ..config import ConfigError

    try:
        creds = resolve_credentials(account.settings, account.account_id, config.env, account.path)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(p) for p in exc.problems)}
    if creds is None:
        return {"ok": False, "error": "no bot token (botToken, or SLACK_BOT_TOKEN for the default account)"}
    base = (account.settings.api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
    bad = _bad_base(base, f"{account.path}.apiBaseUrl")
    if bad:
        return {"ok": False, "error": bad}
    secrets = (creds.bot_token, creds.app_token)
    result: dict[str, Any] = {"ok": False, "mode": creds.mode}
    errors: list[str] = []
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        auth = _slack_call(client, base, "auth.test", creds.bot_token, timeout, secrets)
        if auth["ok"]:
            body = auth["body"]
            result["bot"] = {"id": body.get("user_id"), "name": body.get("user")}
            result["team"] = {"id": body.get("team_id"), "name": body.get("team")}
        else:
            errors.append(auth["error"])
            if "errorCode" in auth:
                result["errorCode"] = auth["errorCode"]
        # the app token only when Slack answered at all (no second wait for a server that is down)
        if creds.mode == "socket" and (auth["ok"] or auth["answered"]):
            opened = _slack_call(client, base, "apps.connections.open", creds.app_token, timeout, secrets)
            if opened["ok"]:
                result["appToken"] = {"ok": True}
            else:
                errors.append(opened["error"])
                result["appToken"] = {
                    "ok": False,
                    "error": opened["error"],
                    **({"errorCode": opened["errorCode"]} if "errorCode" in opened else {}),
                }
    result["ok"] = not errors
    if errors:
        result["error"] = "; ".join(errors)
    result["apiBaseUrl"] = base
    return result


def _probe_whatsapp(config: Config, account: Any, timeout: float) -> dict[str, Any]:
    """`GET /<apiVersion>/<phoneNumberId>` on the Graph API with the access token (in the
    Authorization header): the business number's verified name, display number and quality
    rating, or Graph's error code and message."""
    from urllib.parse import quote

    import httpx

    from ..channels.whatsapp import DEFAULT_API_BASE_URL, DEFAULT_API_VERSION, resolve_credentials
    from ..config import ConfigError

    try:
        creds = resolve_credentials(account.settings, account.account_id, config.env, account.path)
    except ConfigError as exc:
        return {"ok": False, "error": "; ".join(str(p) for p in exc.problems)}
    if creds is None:
        return {"ok": False, "error": "no phoneNumberId (a Cloud API number: phoneNumberId, accessToken)"}
    base = (account.settings.api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
    bad = _bad_base(base, f"{account.path}.apiBaseUrl")
    if bad:
        return {"ok": False, "error": bad}
    version = (account.settings.api_version or DEFAULT_API_VERSION).strip("/")
    where = {"apiBaseUrl": base, "apiVersion": version}
    try:
        response = httpx.get(
            f"{base}/{version}/{quote(creds.phone_number_id, safe='')}",
            params={"fields": "id,display_phone_number,verified_name,quality_rating"},
            headers={"authorization": f"Bearer {creds.access_token}"},
            timeout=timeout,
            trust_env=False,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return {"ok": False, "error": _no_answer(exc, base, timeout), **where}
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status == 200 and isinstance(body, dict) and body.get("id"):
        number = {
            "id": body.get("id"),
            "displayPhoneNumber": body.get("display_phone_number"),
            "verifiedName": body.get("verified_name"),
            "qualityRating": body.get("quality_rating"),
        }
        return {"ok": True, "phoneNumber": number, **where}
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return {"ok": False, "error": f"HTTP {status}: not a Graph API answer", **where}
    code = err.get("code")
    message = _scrub(str(err.get("message") or "unexpected answer"), creds.access_token)
    return {
        "ok": False,
        "error": f"HTTP {status}: {message}" + (f" (code {code})" if code is not None else ""),
        **({"errorCode": code} if isinstance(code, int) else {}),
        **where,
    }


def _probe(config: Config, channel: str, account: Any, timeout: float) -> dict[str, Any]:
    if channel == "telegram":
        return _probe_telegram(config, account, timeout)
    if channel == "discord":
        return _probe_discord(config, account, timeout)
    if channel == "slack":
        return _probe_slack(config, account, timeout)
    if channel == "whatsapp":
        return _probe_whatsapp(config, account, timeout)
    return {"ok": None, "error": "probe not available for this channel in this version"}


def _probe_text(probe: dict[str, Any]) -> str:
    """One probe result as the text output says it."""
    if probe.get("ok") is None:
        return str(probe["error"])
    if probe.get("ok") is not True:
        return f"probe failed: {probe['error']}"
    bot, team, number = probe.get("bot") or {}, probe.get("team") or {}, probe.get("phoneNumber")
    if number:
        detail = f"{number.get('verifiedName')}, {number.get('displayPhoneNumber')}"
    elif team:
        detail = f"@{bot.get('name')} in {team.get('name')} ({team.get('id')})"
    else:
        detail = f"@{bot.get('username')}"
    app_token = probe.get("appToken") or {}
    return f"probe ok ({detail})" + (", app token ok" if app_token.get("ok") else "")


@app.command("status")
def channels_status(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option("--channel", help="Only show one channel (or all).")] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="Check each account's credentials live (getMe, auth.test, Graph API, …)."
        ),
    ] = False,
    timeout_ms: Annotated[int, typer.Option("--timeout", metavar="MS", help="Probe timeout in ms.")] = 60_000,
    nats_url: NatsUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Channel accounts as ingress runs them (config-only when no ingress answers)."""
    from ..channels.accounts import channel_accounts

    config = load(ctx)
    inventory = _inventory(config)
    if channel and channel.strip().lower() != "all":
        wanted = channel.strip().lower()
        if wanted not in inventory:
            fail(f"channel '{wanted}' is not configured (configured: {', '.join(inventory) or 'none'})", 2)
        inventory = {wanted: inventory[wanted]}
    replies = asyncio.run(_ingress_status(config, nats_url))
    live: dict[tuple[str, str], list[dict[str, Any]]] = {}
    access: dict[str, int] = {}
    for reply in replies or []:
        section = reply.get("channels") or {}
        for acct in section.get("accounts") or []:
            live.setdefault((acct.get("channel", ""), acct.get("account", "")), []).append(
                {
                    "instance": reply.get("instance"),
                    **{k: v for k, v in acct.items() if k not in ("channel", "account")},
                }
            )
        for key, value in (section.get("access") or {}).items():
            if isinstance(value, int):
                access[key] = access.get(key, 0) + value
    accounts_by_key = {
        (ch, a.account_id): a for ch in inventory for a in channel_accounts(config.document.channels, ch)
    }
    result: dict[str, Any] = {
        "ingressReachable": replies is not None,
        "configOnly": replies is None,
        "configuredChannels": sorted(inventory),
        "channels": {},
    }
    if replies is not None:
        result["access"] = access
    for ch, rows in inventory.items():
        out_rows = []
        for row in rows:
            entry = dict(row)
            if replies is not None:
                entry["running"] = live.get((ch, row["accountId"]), [])
            if probe:
                entry["probe"] = _probe(
                    config, ch, accounts_by_key[(ch, row["accountId"])], timeout_ms / 1000
                )
            out_rows.append(entry)
        result["channels"][ch] = {"label": _label(ch), "adapter": ch in ADAPTERS, "accounts": out_rows}
    if as_json:
        print_json(result)
        return
    if replies is None:
        console.print("ingress unreachable: config-only summary", markup=False)
    if not inventory:
        console.print("No chat channels configured.", markup=False)
    for ch, section in result["channels"].items():
        for row in section["accounts"]:
            parts = ["enabled" if row["enabled"] else "disabled", f"token={row['credentials']}"]
            if not section["adapter"]:
                parts.append("no adapter in this version")
            elif replies is not None:
                running = row.get("running") or []
                parts.append(
                    "running on " + ", ".join(str(r.get("instance")) for r in running)
                    if running
                    else "not running"
                )
                for r in running:
                    if r.get("bot"):
                        parts.append(f"@{r['bot']} ({r.get('mode', '?')})")
                        break
                for r in running:  # an account that is off, or a connection not up (Slack's Socket Mode)
                    if r.get("error"):
                        parts.append(f"{r.get('instance')}: stopped: {r['error']}")
                    elif r.get("connection") not in (None, "connected"):
                        parts.append(f"{r.get('instance')}: {r['connection']}")
            if "probe" in row:
                parts.append(_probe_text(row["probe"]))
            console.print(f"- {_label(ch)} {row['accountId']}: {', '.join(parts)}", markup=False)
    if access:
        console.print("access: " + ", ".join(f"{k}={v}" for k, v in sorted(access.items())), markup=False)


# --- add / remove ---------------------------------------------------------------------------


def _read_secret_file(path: str, option: str) -> None:
    file = Path(path).expanduser()
    if not file.is_file():
        fail(f"{option}: {file} is not a readable file", 2)


def _account_block(
    data: dict[str, Any], channel: str, account: str, *, create: bool
) -> dict[str, Any] | None:
    """The object that holds `account`'s own keys: the channel itself for a single-account
    channel's default account, else `accounts.<id>` (promoting the channel's account keys into
    `accounts.default` when a second account is added, as OpenClaw does)."""
    from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id

    channels: dict[str, Any] = data.setdefault("channels", {}) if create else data.get("channels") or {}
    section: dict[str, Any] | None = channels.get(channel)
    if section is None:
        if not create:
            return None
        section = channels[channel] = {}
    accounts: dict[str, Any] | None = section.get("accounts")
    if not accounts and account == DEFAULT_ACCOUNT_ID:
        return section
    if not accounts:
        if not create:
            return None
        accounts = section["accounts"] = {}
        promoted = {k: section.pop(k) for k in _ACCOUNT_KEYS if k in section}
        if promoted:
            accounts[DEFAULT_ACCOUNT_ID] = promoted
    for key in accounts:
        if normalize_account_id(key) == account:
            found: dict[str, Any] = accounts[key]
            return found
    if not create:
        return None
    block: dict[str, Any] = {}
    accounts[account] = block
    return block


@app.command("add")
def channels_add(
    ctx: typer.Context,
    channel_arg: Annotated[str | None, typer.Argument(metavar="[CHANNEL]", help="Channel id.")] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Channel (telegram|slack|discord|whatsapp|…).")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="Account id (default when omitted).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name for this account.")] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="Bot token (Telegram, Discord); prefer --token-file or --use-env."),
    ] = None,
    token_file: Annotated[
        str | None, typer.Option("--token-file", help="File holding the bot token (Telegram).")
    ] = None,
    bot_token: Annotated[str | None, typer.Option("--bot-token", help="Slack bot token.")] = None,
    app_token: Annotated[str | None, typer.Option("--app-token", help="Slack app token.")] = None,
    user_token: Annotated[str | None, typer.Option("--user-token", help="Slack user token.")] = None,
    signing_secret: Annotated[
        str | None, typer.Option("--signing-secret", help="Slack signing secret.")
    ] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="Slack connection mode (socket|http).")] = None,
    use_env: Annotated[
        bool,
        typer.Option(
            "--use-env",
            help="Read the token from the environment at run time (TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, SLACK_BOT_TOKEN/SLACK_APP_TOKEN).",
        ),
    ] = False,
) -> None:
    """Add or update a channel account (non-interactive; the token is never printed)."""
    from ..checks import default_checks
    from ..config import update_config_file

    if channel and channel_arg and channel.strip().lower() != channel_arg.strip().lower():
        fail(f'conflicting channels: "{channel}" and "{channel_arg}"', 2)
    ch = (channel or channel_arg or "").strip().lower()
    if not ch:
        fail("channel required: clawmesh channels add --channel <telegram|slack|discord|whatsapp> …", 2)
    acct = _account_opt(account)
    given = {
        "--token": token,
        "--token-file": token_file,
        "--bot-token": bot_token,
        "--app-token": app_token,
        "--user-token": user_token,
        "--signing-secret": signing_secret,
        "--mode": mode,
    }
    keys = _account_keys(ch, acct, given, use_env=use_env)
    if name is not None:
        keys["name"] = name

    def mutate(data: dict[str, Any]) -> None:
        block = _account_block(data, ch, acct, create=True)
        assert block is not None
        section = data["channels"][ch]
        if block is not section:
            block["enabled"] = True
        section["enabled"] = True
        if "tokenFile" in keys:  # one credential source: a file replaces a token in the config
            block.pop("botToken", None)
        elif "botToken" in keys and ch == "telegram":
            block.pop("tokenFile", None)
        block.update(keys)

    path = config_file(ctx)
    update_config_file(path, mutate, checks=default_checks())
    console.print(f'Added {_label(ch)} account "{acct}".', markup=False)
    if ch not in ADAPTERS:
        console.print(
            f"note: clawmesh has no {_label(ch)} adapter in this version; the account is only stored",
            markup=False,
        )


def _account_keys(ch: str, acct: str, given: dict[str, str | None], *, use_env: bool) -> dict[str, Any]:
    """The config keys `channels add` writes for the given flags (OpenClaw's per-channel flags;
    a wrong or conflicting flag fails with the reason, exit 2)."""
    from ..ids import DEFAULT_ACCOUNT_ID

    allowed = {
        "telegram": {"--token", "--token-file"},
        "discord": {"--token"},
        "slack": {"--bot-token", "--app-token", "--user-token", "--signing-secret", "--mode"},
    }.get(ch, set())
    wrong = [flag for flag, value in given.items() if value is not None and flag not in allowed]
    if wrong:
        fail(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not a {_label(ch)} option", 2)
    if use_env:
        if ch not in ENV_TOKENS:
            fail(f"--use-env is not supported for {_label(ch)}", 2)
        if acct != DEFAULT_ACCOUNT_ID:
            names = " and ".join(ENV_TOKENS[ch].values())
            fail(f"{names} can only be used for the default account.", 2)
        missing = [v for v in ENV_TOKENS[ch].values() if not os.environ.get(v, "").strip()]
        if missing:
            fail(f"--use-env: {', '.join(missing)} is not set", 2)
        if any(value is not None for flag, value in given.items() if flag != "--mode"):
            fail("--use-env cannot be combined with token options", 2)
    keys: dict[str, Any] = {}
    token_file, token = given["--token-file"], given["--token"]
    if token_file is not None:
        _read_secret_file(token_file, "--token-file")
        keys["tokenFile"] = str(Path(token_file).expanduser().resolve())
    if token is not None:
        keys["botToken" if ch == "telegram" else "token"] = token
    for key, flag in (
        ("botToken", "--bot-token"),
        ("appToken", "--app-token"),
        ("userToken", "--user-token"),
        ("signingSecret", "--signing-secret"),
        ("mode", "--mode"),
    ):
        if given[flag] is not None:
            keys[key] = given[flag]
    return keys


@app.command("remove")
def channels_remove(
    ctx: typer.Context,
    channel_arg: Annotated[str | None, typer.Argument(metavar="[CHANNEL]", help="Channel id.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Channel.")] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="Account id (default when omitted).")
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the config entries instead of disabling the account.")
    ] = False,
) -> None:
    """Disable a channel account (enabled: false), or --delete its config entries."""
    from ..checks import default_checks
    from ..config import update_config_file
    from ..ids import DEFAULT_ACCOUNT_ID, normalize_account_id

    ch = (channel or channel_arg or "").strip().lower()
    if not ch:
        fail("channel required: clawmesh channels remove --channel <id> [--account <id>] [--delete]", 2)
    acct = _account_opt(account)
    config = load(ctx)
    if ch not in (config.document.channels or {}):
        fail(f"channel '{ch}' is not configured", 2)

    def mutate(data: dict[str, Any]) -> None:
        channels = data.get("channels") or {}
        section = channels.get(ch)
        block = _account_block(data, ch, acct, create=False)
        if section is None or block is None:
            fail(f'{_label(ch)} has no account "{acct}"', 2)
        if not delete:
            block["enabled"] = False
            return
        if block is section:  # the single default account is the channel itself
            del channels[ch]
            return
        accounts = section["accounts"]
        for key in list(accounts):
            if normalize_account_id(key) == acct:
                del accounts[key]
        if not accounts:
            del section["accounts"]
            if acct == DEFAULT_ACCOUNT_ID and not any(k in section for k in _CREDENTIAL_KEYS):
                del channels[ch]

    update_config_file(config_file(ctx), mutate, checks=default_checks())
    verb = "Deleted" if delete else "Disabled"
    console.print(f'{verb} {_label(ch)} account "{acct}".', markup=False)
