"""`clawmesh sessions cleanup`: session-store maintenance now, with `openclaw sessions cleanup`'s
flags, rules (`clawmesh.sessions.plan_cleanup`) and `--json` shape, against the running
gateway's store (KV records and JetStream transcripts)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer

from ._common import console, fail, load, print_json
from ._remote import nats_client

__all__ = ["cleanup"]

# plan reason, OpenClaw's --json count, its text line (dry run / applied)
_COUNTS = (
    ("fix-missing", "missing", "Would prune missing transcripts", "Pruned missing transcripts"),
    (
        "fix-dm-scope",
        "dmScopeRetired",
        "Would retire stale direct DM sessions",
        "Retired stale direct DM sessions",
    ),
    ("prune-stale", "pruned", "Would prune stale", "Pruned stale"),
    ("cap-overflow", "capped", "Would cap overflow", "Capped overflow"),
)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def cleanup(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Preview maintenance actions without writing.")
    ] = False,
    enforce: Annotated[
        bool, typer.Option("--enforce", help="Apply maintenance even when configured mode is warn.")
    ] = False,
    fix_missing: Annotated[
        bool,
        typer.Option(
            "--fix-missing",
            help="Remove sessions whose transcripts are missing (bypasses age/count retention).",
        ),
    ] = False,
    fix_dm_scope: Annotated[
        bool,
        typer.Option(
            "--fix-dm-scope",
            help="Retire stale direct-DM sessions that no longer match session.dmScope=main.",
        ),
    ] = False,
    active_key: Annotated[
        list[str] | None,
        typer.Option("--active-key", help="Protect this session key from maintenance (repeatable)."),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Agent id to maintain (required for multiple agents)."),
    ] = None,
    all_agents: Annotated[
        bool, typer.Option("--all-agents", help="Run maintenance across all configured agents.")
    ] = False,
    store: Annotated[
        str | None, typer.Option("--store", help="OpenClaw's legacy store path: not used by clawmesh.")
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url", help="NATS URL (default: $CLAWMESH_NATS_URL, nats.url, or the embedded server)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Run session-store maintenance now (session.maintenance: pruneAfter, maxEntries, mode)."""
    from ..sessions import CleanupPolicy

    if store is not None:
        fail(
            "--store selects an OpenClaw session file; clawmesh's sessions live in the running "
            "gateway's JetStream (use --nats-url to pick another)",
            2,
        )
    if agent is not None and all_agents:
        fail("give --agent or --all-agents, not both", 2)
    config = load(ctx)
    if agent is not None:
        view = config.agent(agent)
        if view is None:
            fail(f"unknown agent '{agent}' (configured: {', '.join(config.agent_ids)})")
        agents = [view.id]
    elif all_agents or len(config.agent_ids) == 1:
        agents = list(config.agent_ids)
    else:
        fail(
            "Multiple agents are configured, but session-store selection has no explicit owner. Pass "
            "--agent <id> to select one agent, or --all-agents to include every configured agent."
        )
    session = config.raw.get("session") if isinstance(config.raw.get("session"), dict) else {}
    try:
        policy = CleanupPolicy.from_config((session or {}).get("maintenance"))
    except ValueError as exc:
        fail(str(exc))
    apply = not dry_run and (policy.mode == "enforce" or enforce)
    reports = asyncio.run(
        _run(
            config,
            nats_url,
            agents,
            policy,
            apply,
            dry_run,
            list(active_key or ()),
            fix_missing,
            fix_dm_scope,
        )
    )
    if as_json:
        if all_agents:
            print_json({"allAgents": True, "mode": policy.mode, "dryRun": dry_run, "stores": reports})
        else:
            print_json(reports[0])
        return
    for report in reports:
        _print(report, policy.mode)
    if any(r["failed"] for r in reports):
        raise typer.Exit(1)


async def _run(
    config: Any,
    nats_url: str | None,
    agents: list[str],
    policy: Any,
    apply: bool,
    dry_run: bool,
    active: list[str],
    fix_missing: bool,
    fix_dm_scope: bool,
) -> list[dict[str, Any]]:
    from ..routing import normalize_main_key
    from ..sessions import SessionFacts, plan_cleanup
    from ._client_cmds import _store

    settings = config.settings.session
    async with nats_client(config, nats_url) as nc:
        store = await _store(nc, config)
        records = await store.list_session_revisions()
        now = time.time()
        reports = []
        for agent_id in agents:
            mine = [(r, rev) for r, rev in records if r.agent_id == agent_id]
            facts, revisions = [], {}
            for record, revision in mine:
                done = await store.get_done(record.session_key)
                done_seq = done[0].seq if done else 0
                facts.append(
                    SessionFacts(
                        session_key=record.session_key,
                        agent_id=agent_id,
                        updated_at=max(record.updated_at, done[0].updated_at if done else 0.0),
                        queued=record.seq - done_seq,
                        has_transcript=(not fix_missing)
                        or await store.has_transcript(agent_id, record.session_key),
                    )
                )
                revisions[record.session_key] = revision
            plan = plan_cleanup(
                facts,
                policy,
                now=now,
                main_key=normalize_main_key(settings.main_key),
                dm_scope=settings.dm_scope,
                active_keys=active,
                fix_missing=fix_missing,
                fix_dm_scope=fix_dm_scope,
            )
            done_keys: list[str] = []
            failed: list[dict[str, str]] = []
            if apply:
                for action in plan.actions:
                    key = action.session.session_key
                    try:
                        if await store.delete_session(agent_id, key, revision=revisions[key]):
                            done_keys.append(key)
                        else:
                            failed.append({"sessionKey": key, "error": "changed since it was read: kept"})
                    except Exception as exc:  # one session that cannot be removed does not stop the rest
                        failed.append({"sessionKey": key, "error": f"{type(exc).__name__}: {exc}"})
            removed = len(done_keys) if apply else len(plan.actions)
            report: dict[str, Any] = {
                "agentId": agent_id,
                "storePath": f"jetstream stream {store.stream}, kv {store.subjects.bucket('sessions')}",
                "mode": policy.mode,
                "dryRun": dry_run,
                "beforeCount": len(facts),
                "afterCount": len(facts) - removed,
            }
            for reason, field, _, _ in _COUNTS:
                report[field] = sum(1 for a in plan.actions if a.reason == reason)
            report.update(
                {
                    "modelRunPruned": 0,
                    "archived": 0,
                    "capArchived": 0,
                    "unreferencedArtifacts": None,
                    "diskBudget": None,
                    "wouldMutate": bool(plan.actions),
                    "applied": apply,
                    "actions": [
                        {
                            "sessionKey": a.session.session_key,
                            "action": a.reason,
                            "ageSeconds": round(now - a.session.updated_at),
                        }
                        for a in plan.actions
                    ],
                    "protected": list(plan.protected),
                    "failed": failed,
                }
            )
            reports.append(report)
        return reports


def _print(report: dict[str, Any], mode: str) -> None:
    would = not report["applied"]
    console.print(f"Session store: {report['storePath']} (agent {report['agentId']})")
    note = "" if report["applied"] or report["dryRun"] else " (report only; --enforce to apply)"
    console.print(f"Maintenance mode: {mode}{note}")
    before, after = report["beforeCount"], report["afterCount"]
    console.print(f"Entries: {before} -> {after} (remove {before - after})")
    for _, field, would_do, did in _COUNTS:
        console.print(f"{would_do if would else did}: {report[field]}")
    if report["actions"] and (would or report["dryRun"]):
        console.print("")
        width = max(len(a["sessionKey"]) for a in report["actions"])
        console.print(f"{'Action':<14} {'Key':<{width}} Age")
        for a in report["actions"]:
            console.print(f"{a['action']:<14} {a['sessionKey']:<{width}} {_age(a['ageSeconds'])}")
    for row in report["failed"]:
        console.print(f"could not remove {row['sessionKey']}: {row['error']}")
