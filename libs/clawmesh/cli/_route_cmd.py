"""`clawmesh route`: which agent and session a message would get, and why."""

from __future__ import annotations

from typing import Annotated

import typer

from ..routing import explain_route, resolve_route
from ._common import console, load, parse_peer, print_json


def route(
    ctx: typer.Context,
    channel: Annotated[str, typer.Option("--channel", help="Channel id (telegram, discord, slack, api, …).")],
    account: Annotated[
        str | None, typer.Option("--account", help="Channel account id (default: 'default').")
    ] = None,
    peer: Annotated[str | None, typer.Option("--peer", help="kind:id, kind = direct|group|channel.")] = None,
    parent_peer: Annotated[str | None, typer.Option("--parent-peer", help="Thread parent, kind:id.")] = None,
    guild: Annotated[str | None, typer.Option("--guild", help="Discord guild id.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Slack team id.")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="Member role id, repeatable.")] = None,
    dm_scope: Annotated[
        str | None, typer.Option("--dm-scope", help="Override session.dmScope for this call.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every tier and binding, and why each (did not) match.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Resolve a route exactly as the router would."""
    config = load(ctx)
    kwargs = dict(
        channel=channel,
        account_id=account,
        peer=parse_peer(peer),
        parent_peer=parse_peer(parent_peer, "--parent-peer"),
        guild_id=guild,
        team_id=team,
        member_role_ids=tuple(role or ()),
        dm_scope=dm_scope,
    )
    if explain:
        expl = explain_route(config, **kwargs)  # type: ignore[arg-type]
        if as_json:
            print_json(expl.to_dict())
        else:
            console.print(expl.render(), markup=False)
        if expl.route is None:
            raise typer.Exit(1)
        return
    r = resolve_route(config, **kwargs)  # type: ignore[arg-type]
    if as_json:
        print_json(r.to_dict())
        return
    console.print(
        f"agent {r.agent_id} (matched by {r.matched_by})\nsession {r.session_key}\n"
        f"main session {r.main_session_key} (lastRoutePolicy {r.last_route_policy})",
        markup=False,
    )
