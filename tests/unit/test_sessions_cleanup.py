"""Which sessions `clawmesh sessions cleanup` removes, and why (OpenClaw's maintenance rules)."""

from __future__ import annotations

import pytest

from clawmesh.sessions import CleanupPolicy, SessionFacts, parse_duration, plan_cleanup

DAY = 86400.0
NOW = 1_000 * DAY


def facts(key: str, age_days: float, *, queued: int = 0, transcript: bool = True) -> SessionFacts:
    agent = key.split(":")[1]
    return SessionFacts(key, agent, NOW - age_days * DAY, queued=queued, has_transcript=transcript)


def reasons(plan: object) -> dict[str, str]:
    return {a.session.session_key: a.reason for a in plan.actions}  # type: ignore[attr-defined]


def test_stale_sessions_go_and_durable_ones_stay() -> None:
    sessions = [
        facts("agent:main:telegram:direct:ann", 40),  # stale DM
        facts("agent:main:telegram:direct:bob", 2),  # recent
        facts("agent:main:main", 400),  # the agent's main session
        facts("agent:main:telegram:group:g1", 400),  # a group: durable pointer
        facts("agent:main:discord:channel:c1:thread:t9", 400),  # a thread
        facts("agent:main:api:direct:busy", 90, queued=1),  # work still queued
        facts("agent:main:api:direct:pinned", 90),
        facts("agent:main:cron:nightly", 31),  # synthetic: disposable
    ]
    plan = plan_cleanup(sessions, CleanupPolicy(), now=NOW, active_keys=["agent:main:api:direct:pinned"])
    assert reasons(plan) == {
        "agent:main:cron:nightly": "prune-stale",
        "agent:main:telegram:direct:ann": "prune-stale",
    }
    assert plan.kept == 6
    assert set(plan.protected) == {
        "agent:main:main",
        "agent:main:telegram:group:g1",
        "agent:main:discord:channel:c1:thread:t9",
        "agent:main:api:direct:busy",
        "agent:main:api:direct:pinned",
    }
    # the order is oldest first
    assert [a.session.session_key for a in plan.actions] == [
        "agent:main:telegram:direct:ann",
        "agent:main:cron:nightly",
    ]


def test_the_cap_removes_the_least_recently_active_and_protected_ones_count() -> None:
    sessions = [facts(f"agent:main:api:direct:u{i}", i) for i in range(1, 6)] + [facts("agent:main:main", 50)]
    plan = plan_cleanup(sessions, CleanupPolicy(prune_after=None, max_entries=3), now=NOW)
    # 6 sessions, cap 3, main protected (counts): the 3 oldest unprotected go
    assert reasons(plan) == {f"agent:main:api:direct:u{i}": "cap-overflow" for i in (3, 4, 5)}
    assert plan.kept == 3


def test_fix_missing_and_fix_dm_scope_bypass_age() -> None:
    sessions = [
        facts("agent:main:api:direct:gone", 0, transcript=False),
        facts("agent:main:telegram:direct:ann", 0),
        facts("agent:main:telegram:group:g1", 0),
        facts("agent:main:main", 0),
    ]
    assert reasons(plan_cleanup(sessions, CleanupPolicy(), now=NOW)) == {}
    plan = plan_cleanup(sessions, CleanupPolicy(), now=NOW, fix_missing=True, fix_dm_scope=True)
    assert reasons(plan) == {
        "agent:main:api:direct:gone": "fix-missing",
        "agent:main:telegram:direct:ann": "fix-dm-scope",
    }
    # with a per-peer scope the peer-keyed DMs are the current layout: nothing to retire
    per_peer = plan_cleanup(sessions, CleanupPolicy(), now=NOW, fix_dm_scope=True, dm_scope="per-peer")
    assert reasons(per_peer) == {}


def test_maintenance_settings_and_durations() -> None:
    policy = CleanupPolicy.from_config({"mode": "warn", "pruneAfter": "12h", "maxEntries": 10})
    assert (policy.mode, policy.prune_after, policy.max_entries) == ("warn", 12 * 3600, 10)
    assert CleanupPolicy.from_config(None) == CleanupPolicy()
    assert CleanupPolicy.from_config({"pruneAfter": 7}).prune_after == 7 * DAY
    assert CleanupPolicy.from_config({"pruneAfter": False}).prune_after is None
    assert parse_duration("90m", where="x") == 5400
    with pytest.raises(ValueError, match=r"session\.maintenance\.pruneAfter.*'soon'"):
        CleanupPolicy.from_config({"pruneAfter": "soon"})
