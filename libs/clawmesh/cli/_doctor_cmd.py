"""`clawmesh doctor`: config, state dir, gateway and NATS, Docker, credentials, each with a fix-it hint."""

from __future__ import annotations

import asyncio
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..config import Config, ConfigError, config_path, state_dir
from ._common import console, print_json

__all__ = ["doctor"]

Status = Literal["ok", "warn", "fail"]


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    fix: str | None = None


def _config(ctx: typer.Context, found: list[Finding]) -> Config | None:
    from ._common import _chosen_config, load

    path = config_path(_chosen_config(ctx))
    try:
        config = load(ctx)
    except ConfigError as exc:
        found.append(
            Finding(
                "config",
                "fail",
                f"{len(exc.problems)} error(s) in {exc.source or path}: {exc.problems[0] if exc.problems else ''}",
                "clawmesh config validate (lists every error with its path)",
            )
        )
        return None
    where = str(config.source) if config.source else f"{path} does not exist: built-in defaults"
    found.append(Finding("config", "ok", f"{where}; {len(config.agents)} agent(s)"))
    if config.warnings:
        found.append(
            Finding(
                "config",
                "warn",
                f"{len(config.warnings)} warning(s), e.g. {config.warnings[0]}",
                "clawmesh config validate",
            )
        )
    return config


def _private(path: Path, mode: int) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & ~mode == 0


def _state(sdir: Path, found: list[Finding]) -> None:
    if not sdir.exists():
        found.append(Finding("state", "ok", f"{sdir} does not exist yet (`clawmesh up` creates it)"))
        return
    if not sdir.is_dir():
        found.append(
            Finding("state", "fail", f"{sdir} is not a directory", "set CLAWMESH_STATE_DIR to a directory")
        )
        return
    probe = sdir / ".doctor-probe"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        found.append(
            Finding("state", "fail", f"{sdir} is not writable ({exc.strerror})", f"chown -R $USER {sdir}")
        )
        return
    found.append(Finding("state", "ok", str(sdir)))
    for path, mode in (
        (sdir / "nats-auth", 0o700),
        (sdir / "nats-auth" / "users.json", 0o600),
        (sdir / "gateway-token", 0o600),
    ):
        if path.exists() and not _private(path, mode):
            found.append(
                Finding(
                    "credentials",
                    "fail",
                    f"{path} is readable by other users (mode {stat.S_IMODE(path.stat().st_mode):o})",
                    f"chmod {mode:o} {path}",
                )
            )
    leftovers = sorted(sdir.glob("nats-server-*.conf"))
    if leftovers:
        found.append(
            Finding(
                "state",
                "warn",
                f"{len(leftovers)} nats-server config file(s) left by killed starts",
                f"rm {' '.join(str(p) for p in leftovers[:3])}{' …' if len(leftovers) > 3 else ''}",
            )
        )


def _gateway(config: Config, sdir: Path, found: list[Finding]) -> None:
    from ..localgateway import running
    from ._remote import nats_url

    live = running(sdir)
    if live is None:
        found.append(
            Finding("gateway", "warn", f"no `clawmesh up` running on {sdir}", "clawmesh up (or make run)")
        )
    else:
        found.append(Finding("gateway", "ok", f"pid {live.pid} at {live.url or '(starting)'}"))
    target = nats_url(config, None)

    async def ping() -> None:
        from ..bus import connect
        from ._remote import nats_credentials

        nc = await connect(
            target,
            name="clawmesh-doctor",
            **nats_credentials(config, target),
            connect_timeout=3.0,
            retry_forever=False,
            quiet=True,
        )
        await nc.close()

    try:
        asyncio.run(ping())
    except PermissionError as exc:
        found.append(
            Finding(
                "nats",
                "fail",
                f"{target} refused the login ({exc})",
                "set nats.user/password (or CLAWMESH_NATS_USER/PASSWORD); a local `clawmesh up` needs the same state dir",
            )
        )
    except Exception as exc:
        found.append(
            Finding(
                "nats",
                "fail" if live is not None else "warn",
                f"cannot reach {target} ({type(exc).__name__})",
                "clawmesh up, or nats.url / CLAWMESH_NATS_URL for an existing NATS",
            )
        )
    else:
        found.append(Finding("nats", "ok", target))


def _docker(config: Config, found: list[Finding]) -> None:
    from ..sandbox import resolve_sandbox

    sandboxed = [a.id for a in config.agents if resolve_sandbox(config, a.id).mode != "off"]
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        version = client.version().get("Version", "?")
        client.close()
    except Exception as exc:
        if sandboxed:
            found.append(
                Finding(
                    "docker",
                    "fail",
                    f"agents {', '.join(sandboxed)} run tools in sandboxes but Docker is unreachable ({type(exc).__name__})",
                    "install and start Docker (scripts/ensure-docker.sh), or set agents.defaults.sandbox.mode to off",
                )
            )
        else:
            found.append(Finding("docker", "ok", "not reachable, and no agent uses a sandbox"))
        return
    found.append(
        Finding(
            "docker",
            "ok",
            f"Docker {version}" + (f"; sandboxes for {', '.join(sandboxed)}" if sandboxed else ""),
        )
    )


def _credentials(config: Config, found: list[Finding]) -> None:
    from ..providers import AuthProfiles, ProviderError, resolve_target

    for agent in config.agents:
        profiles = AuthProfiles.for_agent(agent)
        for ref in agent.models:
            try:
                target = resolve_target(config, ref)
                if not profiles.candidates(target.provider_id, target):
                    found.append(
                        Finding(
                            "credentials",
                            "fail",
                            f"agent {agent.id}: model {ref} has no API key",
                            profiles.missing_key_hint(target),
                        )
                    )
                    continue
            except ProviderError as exc:
                found.append(
                    Finding(
                        "credentials",
                        "fail",
                        f"agent {agent.id}: model {ref}: {exc}",
                        "clawmesh config validate",
                    )
                )
                continue
            found.append(Finding("credentials", "ok", f"agent {agent.id}: {ref}"))


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check the config, state dir, the running gateway and NATS, Docker and model credentials;
    say how to fix what is wrong. Exit status 1 if a check failed."""
    found: list[Finding] = []
    sdir = state_dir()
    config = _config(ctx, found)
    _state(sdir, found)
    if config is not None:
        _gateway(config, sdir, found)
        _docker(config, found)
        _credentials(config, found)
    failed = any(f.status == "fail" for f in found)
    if as_json:
        data: dict[str, Any] = {"ok": not failed, "checks": [asdict(f) for f in found]}
        print_json(data)
    else:
        for f in found:
            console.print(f"{f.status:<4}  {f.check:<11} {f.detail}")
            if f.fix and f.status != "ok":
                console.print(f"      {'':<11} fix: {f.fix}")
    raise typer.Exit(1 if failed else 0)
