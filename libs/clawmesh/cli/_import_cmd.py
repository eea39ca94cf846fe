"""`clawmesh import openclaw`: an OpenClaw state dir (config, workspaces, agent dirs, sessions)
into clawmesh, in one command that can be run again (docs/migrating.md)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import config_file, console, err_console, fail, print_json, report_config_error

__all__ = ["app", "import_openclaw"]

app = typer.Typer(
    help="Bring an OpenClaw install over: config, workspaces, agent dirs, sessions.", no_args_is_help=True
)


def _describe_files(files: list[Any]) -> str:
    new = sum(f.state == "new" for f in files)
    same = sum(f.state == "same" for f in files)
    differs = sum(f.state == "differs" for f in files)
    parts = [
        f"{new} to copy" if new else "",
        f"{same} unchanged" if same else "",
        f"{differs} differ" if differs else "",
    ]
    return f"{len(files)} file(s)" + (f" ({', '.join(p for p in parts if p)})" if files else "")


@app.command("openclaw")
def import_openclaw(
    ctx: typer.Context,
    from_dir: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DIR",
            help="OpenClaw state dir (default: $OPENCLAW_STATE_DIR, else ~/.openclaw); its config: "
            "$OPENCLAW_CONFIG_PATH, else DIR/openclaw.json.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be imported; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The plan and the outcome as JSON.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace clawmesh's config and files that differ from OpenClaw's.")
    ] = False,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="NATS URL (default: the local gateway's).")
    ] = None,
) -> None:
    """Import OpenClaw's config (as is), workspaces, agent dirs (auth profiles, models.json) and
    sessions (SQLite store or legacy JSONL; transcripts into JetStream). Idempotent: a second
    run writes nothing new. Sessions need a running gateway (`clawmesh up`); --dry-run does not."""
    from ..checks import default_checks
    from ..config import ConfigError, load_config, parse_config
    from ..migrate import openclaw_config_path, openclaw_state_dir, plan_files

    env = dict(os.environ)
    source = openclaw_state_dir(from_dir, env)
    if not source.is_dir():
        fail(f"no OpenClaw state dir at {source} (give --from DIR or set OPENCLAW_STATE_DIR)")
    config_src = openclaw_config_path(source, env)
    config_dst = config_file(ctx)
    try:
        if config_src.is_file():
            oc_config = load_config(config_src, checks=default_checks(), env=env)
        else:
            oc_config = parse_config({}, checks=default_checks(), env=env, source=None)
    except ConfigError as exc:
        report_config_error(exc)
        fail(f"OpenClaw's config {config_src} does not load in clawmesh; nothing imported")
    plan = plan_files(source, config_src, config_dst, oc_config, env)
    if not config_src.is_file():
        plan.config_state = "same"  # nothing to copy
    refused: list[str] = []
    if plan.config_state == "differs" and not yes:
        refused.append(f"{config_dst} exists and differs from {config_src}")
    refused += [
        f"{f.dst} exists and differs from {f.src}" for f in plan.files() if f.state == "differs" and not yes
    ]

    report = _plan_report(source, config_src, config_dst, plan, dry_run, refused)

    def say(text: str) -> None:
        if not as_json:
            console.print(text, markup=False, emoji=False)

    _say_plan(say, plan, report, config_src, config_dst, dry_run=dry_run, yes=yes)
    for problem in plan.problems:
        err_console.print(f"skipped: {problem}", markup=False, emoji=False)
    if refused:
        for line in refused:
            err_console.print(f"refused: {line}", markup=False, emoji=False)
    if dry_run or refused:
        if as_json:
            print_json(report)
        if refused:
            fail(
                f"{len(refused)} destination(s) differ from OpenClaw's; nothing imported (--yes replaces them)"
            )
        if plan.problems:
            raise typer.Exit(1)
        return

    failures = _apply(ctx, plan, report, nats_url, say, as_json=as_json)
    if as_json:
        print_json(report)
    skipped = len(plan.problems) + failures
    if skipped:
        fail(f"{skipped} item(s) were not imported (see above); the rest was")


def _plan_report(
    source: Path, config_src: Path, config_dst: Path, plan: Any, dry_run: bool, refused: list[str]
) -> dict[str, Any]:
    """The import plan as `--json` shows it (each session's state becomes its outcome later)."""
    from ..migrate import session_summary

    summaries = {(a.agent_id, s.session_key): session_summary(s) for a in plan.agents for s in a.sessions}
    return {
        "source": str(source),
        "config": {"from": str(config_src), "to": str(config_dst), "state": plan.config_state},
        "dryRun": dry_run,
        "agents": [
            {
                "agentId": a.agent_id,
                "workspace": [str(p) for p in a.workspace],
                "agentDir": [str(p) for p in a.agent_dir],
                "files": [{"from": str(f.src), "to": str(f.dst), "state": f.state} for f in a.files],
                "sessions": [
                    {
                        "sessionKey": s.session_key,
                        "sessionId": s.session_id,
                        "from": s.origin,
                        "turns": summaries[(a.agent_id, s.session_key)].turns,
                        "records": summaries[(a.agent_id, s.session_key)].records,
                        "state": "planned",
                    }
                    for s in a.sessions
                ],
            }
            for a in plan.agents
        ],
        "problems": [str(p) for p in plan.problems],
        "refused": refused,
    }


def _say_plan(
    say: Any,
    plan: Any,
    report: dict[str, Any],
    config_src: Path,
    config_dst: Path,
    *,
    dry_run: bool,
    yes: bool,
) -> None:
    """What will be (or, with --dry-run, would be) imported, for a person."""
    verb = "would " if dry_run else ""
    say(f"OpenClaw state dir {report['source']}")
    config_note = {
        "new": f"{verb}copy to {config_dst}",
        "same": "unchanged" if config_src.is_file() else "none found",
        "differs": f"differs from {config_dst}"
        + (f" ({verb}replace: --yes)" if yes else " (not replaced without --yes)"),
    }[plan.config_state]
    say(f"config {config_src}: {config_note}")
    for a in report["agents"]:
        sessions = a["sessions"]
        turns = sum(s["turns"] for s in sessions)
        records = sum(s["records"] for s in sessions)
        say(
            f"agent {a['agentId']}: {_describe_files([f for p in plan.agents if p.agent_id == a['agentId'] for f in p.files])}, "
            f"{len(sessions)} session(s) ({turns} turns, {records} transcript records)"
        )
        if dry_run:
            for what, (theirs, mine) in (("workspace", a["workspace"]), ("agent dir", a["agentDir"])):
                where = "used where it is" if theirs == mine else f"→ {mine}"
                say(f"  {what} {theirs} {where}{'' if Path(theirs).is_dir() else ' (none in OpenClaw)'}")
            for f in a["files"]:
                if f["state"] != "same":
                    say(f"  {verb}{'copy' if f['state'] == 'new' else 'replace'} {f['from']} → {f['to']}")
            for s in sessions:
                say(f"  {verb}import session {s['sessionKey']} ({s['turns']} turns) from {s['from']}")


def _apply(
    ctx: typer.Context,
    plan: Any,
    report: dict[str, Any],
    nats_url: str | None,
    say: Callable[[str], None],
    *,
    as_json: bool,
) -> int:
    """Write the files, then the sessions; the number of sessions that could not be imported."""
    from ..config import load_config
    from ..migrate import FileCopy, copy_file, import_session
    from ._common import load
    from ._remote import nats_client

    sessions = [s for a in plan.agents for s in a.sessions]
    # The NATS connection first: without a gateway nothing is written (and the message says what to run).
    if plan.config_dst.is_file():
        target_config = load(ctx)
    else:
        from ..checks import default_checks

        target_config = (
            load_config(plan.config_src, checks=default_checks()) if plan.config_src.is_file() else load(ctx)
        )

    async def run() -> int:
        failures = 0
        async with AsyncExitStack() as stack:
            nc = await stack.enter_async_context(nats_client(target_config, nats_url)) if sessions else None
            if plan.config_state in ("new", "differs") and plan.config_src.is_file():
                copy_file(FileCopy(plan.config_src, plan.config_dst, plan.config_state, secret=True))
                say(f"config copied to {plan.config_dst}")
            copied = 0
            for item in plan.files():
                if item.state != "same":
                    copy_file(item)
                    copied += 1
            if copied:
                say(f"{copied} file(s) copied")
            if nc is None:
                return 0
            store = await _session_store(nc, target_config)
            for agent, a_report in zip(plan.agents, report["agents"], strict=True):
                for session, s_report in zip(agent.sessions, a_report["sessions"], strict=True):
                    key = session.session_key

                    def progress(n: int, key: str = key) -> None:
                        if not as_json:
                            err_console.print(f"  {key}: {n} turns…", markup=False, emoji=False)

                    try:
                        outcome = await import_session(store, session, progress)
                    except Exception as exc:  # one session's failure must not stop the others
                        failures += 1
                        s_report["state"] = "failed"
                        err_console.print(f"failed: session {key}: {type(exc).__name__}: {exc}", markup=False)
                        continue
                    s_report["state"] = outcome.state
                    if outcome.state == "conflict":
                        failures += 1
                        err_console.print(f"skipped: {outcome.detail}", markup=False, emoji=False)
                    elif outcome.state == "unchanged":
                        say(f"session {key}: imported before; unchanged")
                    else:
                        say(f"session {key}: imported {outcome.turns} turns ({outcome.records} records)")
        return failures

    failures: int = asyncio.run(run())
    states = [s["state"] for a in report["agents"] for s in a["sessions"]]
    files_new = sum(f.state != "same" for f in plan.files()) + (plan.config_state != "same")
    if not files_new and states.count("imported") == 0:
        say("nothing new to import: everything was imported before")
    return failures


async def _session_store(nc: Any, config: Any) -> Any:
    from nats.js.errors import NotFoundError

    from ..sessions import SessionStore
    from ..wire import Subjects

    subjects = Subjects(config.subject_prefix)
    js = nc.jetstream()
    try:
        sessions = await js.key_value(subjects.bucket("sessions"))
    except NotFoundError:
        fail("the gateway's session store does not exist yet: start it once with `clawmesh up`")
    return SessionStore(js, subjects, sessions)
