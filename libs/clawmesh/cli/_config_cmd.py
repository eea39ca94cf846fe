"""`clawmesh config validate|show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import ConfigError, Problem
from ._common import config_file, console, err_console, load, print_json, report_config_error
from ._lazy import LazyCommand, lazy_group

_RELOAD = LazyCommand(
    "clawmesh.cli._client_cmds:config_reload",
    "Ask every running service to reload its config file (invalid files are refused, the old config stays).",
)
app = typer.Typer(
    help="Check and inspect the configuration.", no_args_is_help=True, cls=lazy_group({"reload": _RELOAD})
)

_SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "apikey",
        "bottoken",
        "apptoken",
        "signingsecret",
        "webhooksecret",
        "secret",
        "key",
        "nkeyseed",
    }
)


def redact(value: Any, key: str = "") -> Any:
    """Replace secret values (tokens, passwords, API keys) by `***`."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and key.lower().replace("_", "") in _SECRET_KEYS and value:
        return "***"
    return value


def _issue(problem: Problem) -> dict[str, str]:
    """One finding in OpenClaw's `config validate --json` shape (paths without the leading `$.`)."""
    path = problem.path.removeprefix("$").removeprefix(".")
    return {"path": path, "message": problem.message, "severity": problem.severity}


@app.command()
def validate(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {valid, path, issues: [{path, message, severity}]} only.")
    ] = False,
) -> None:
    """Validate the config file; list every error (exit 1) and every warning."""
    path = config_file(ctx)
    try:
        config = load(ctx)
    except ConfigError as exc:
        if as_json:
            issues = [_issue(p) for p in (*exc.problems, *exc.warnings)]
            print_json({"valid": False, "path": exc.source or str(path), "issues": issues})
        else:
            report_config_error(exc)
            for warning in exc.warnings:
                err_console.print(f"  warning: {warning}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        where_json = str(config.source) if config.source else None
        print_json({"valid": True, "path": where_json, "issues": [_issue(p) for p in config.warnings]})
        return
    where = str(config.source) if config.source else f"{path} (not found: using defaults)"
    bindings = len(config.document.bindings or ())
    console.print(
        f"config OK: {where} — {len(config.agents)} agent(s), {bindings} binding(s), {len(config.warnings)} warning(s)",
        markup=False,
    )
    for warning in config.warnings:
        console.print(f"  warning: {warning}", markup=False)


@app.command()
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Print the effective config (after ${ENV} substitution and env overrides), secrets redacted."""
    config = load(ctx)
    effective = redact(config.raw)
    if as_json:
        print_json(effective)
        return
    console.print(
        f"# {config.source or 'defaults (no config file)'} — version {config.version}", markup=False
    )
    print_json(effective)
