"""Regenerate tests/fixtures/oracle/session_keys.json.gz from the real OpenClaw (`make oracle-fixtures`).

Generates thousands of ordinary and adversarial inputs (session keys, agent/account ids, thread
keys, peer keys, routing inputs against generated configs), runs OpenClaw's own functions on
them through `session_keys.mjs`, and stores `{input, output}` pairs. The test suite
(tests/unit/test_oracle_session_keys.py) compares clawmesh with the file without node.

Needs OpenClaw 2026.9.6 and Node 24 from npm in $OPENCLAW_ORACLE_DIR (default
~/.cache/openclaw-oracle; see docs/openclaw-oracle.md). The inputs are seeded, so a rerun on
the same OpenClaw version writes the same file.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "session_keys.json.gz"
SCRIPT = Path(__file__).with_suffix(".mjs")
EXPECTED_VERSION = "2026.9.6"
SEED = 20261203

# ---------------------------------------------------------------------------------------------
# Building blocks

CHANNELS = ["discord", "telegram", "whatsapp", "signal", "matrix", "slack", "imessage", "api", "openai"]
CHANNEL_VARIANTS = [*CHANNELS, "Discord", "MATRIX", "Signal", "WhatsApp", " slack ", "", "unknown", "x-y"]
KINDS = ["direct", "dm", "group", "channel"]
KIND_VARIANTS = [*KINDS, "DIRECT", "Dm", "Group", "CHANNEL", " group ", "thread", "room", "", "peer"]
MARKERS = ["thread", "THREAD", "Thread", "subagent", "SUBAGENT", "cron", "Cron", "run", "acp", "topic"]
AGENT_IDS = [
    "main",
    "Main",
    "ops",
    "OPS",
    " ops ",
    "a",
    "a-b_c",
    "A_B-C",
    "0",
    "9lives",
    "-lead",
    "lead-",
    "_x",
    "x__y",
    "agent",
    "Agent",
    "été",
    "ſ",
    "K",
    "İstanbul",
    "日本",
    "a b",
    "a.b",
    "a:b",
    "a/b",
    "__proto__",
    "constructor",
    "prototype",
    "x" * 64,
    "y" * 65,
    "Z" * 200,
    "   ",
    "",
    "\tops\n",
    "ops\u00a0",
    "\ufeffops",
    "ops\u0085",
    "\x1fops",
    "ops\u2028",
    "a--b",
    "--",
    "é-é",
]
PEER_IDS = [
    "alice",
    "Alice",
    "ALICE",
    "+15551234567",
    "u123",
    "U0ABCDEF",
    "123456789012345678",
    "120363012345678901@g.us",
    "120363012345678901@G.US",
    "15551234567@s.whatsapp.net",
    "!RoomAbC:matrix.org",
    "!roomabc:Matrix.Org",
    "@User:matrix.org",
    "$EvEnTiD_AbC123",
    "$lowercase",
    "dGVzdA+/AbC==",
    "AbC+/xYz=",
    "C0123ABC",
    "ts.1712345678.000100",
    "guild-1",
    "channel-2",
    "é",
    "Ünïcödé",
    "日本語",
    "🙂",
    "a b",
    " spaced ",
    "",
    " ",
    "x" * 300,
    "Q" * 5000,
    "1:2",
    "a::b",
    "group",
    "channel",
    "direct",
    "dm",
    "thread",
    "agent",
    "subagent",
    "cron",
    "main",
    "\u0130",
    "\u03a3\u03a3",
    "ß",
    "\uffff",
    "K",
]
THREAD_IDS = [
    "1712345678.000100",
    "$EvEnTiD_AbC123",
    "$lower",
    "T1",
    "AbC",
    "  AbC  ",
    "",
    " ",
    "ÄÖÜ",
    "1:2",
    "thread",
    "x" * 200,
    "🙂",
    "İ",
    "12345",
]
ACCOUNT_IDS = [
    None,
    "",
    " ",
    "default",
    "Default",
    "work",
    "Work",
    " work ",
    "*",
    "acct-1",
    "ACCT_2",
    "a b",
    "__proto__",
    "constructor",
    "ſ",
    "é",
    "x" * 70,
    "-",
    "bot:1",
    "main",
]


def _case(r: random.Random, s: str) -> str:
    pick = r.random()
    if pick < 0.55:
        return s
    if pick < 0.7:
        return s.upper()
    if pick < 0.85:
        return s.capitalize()
    return "".join(c.upper() if r.random() < 0.5 else c for c in s)


def _space(r: random.Random, s: str) -> str:
    if r.random() < 0.85:
        return s
    return r.choice([" ", "\t", "\n", "\u00a0", "\ufeff", "\u2003"]) + s + r.choice(["", " ", "\n"])


def _agent_prefix(r: random.Random) -> str:
    pick = r.random()
    if pick < 0.6:
        return f"{_case(r, 'agent')}:{r.choice(AGENT_IDS)}:"
    if pick < 0.7:
        return f"agent:{r.choice(AGENT_IDS)}:agent:{r.choice(AGENT_IDS)}:"
    if pick < 0.78:
        return f"agent:{r.choice(AGENT_IDS)}::"
    if pick < 0.84:
        return "agent::"
    if pick < 0.9:
        return f"agent:{r.choice(AGENT_IDS)}:" * r.randint(2, 4)
    return ""


def _peer(r: random.Random) -> str:
    return _case(r, r.choice(PEER_IDS)) if r.random() < 0.2 else r.choice(PEER_IDS)


def _body(r: random.Random) -> str:
    """The part after `agent:<id>:`, from the key grammar and from deliberately broken variants."""
    ch = r.choice(CHANNEL_VARIANTS)
    kind = r.choice(KIND_VARIANTS)
    acct = r.choice([a for a in ACCOUNT_IDS if a is not None])
    peer = _peer(r)
    shapes = [
        lambda: r.choice(["main", "Main", "MAIN", "work", "global", "unknown", "dashboard:x"]),
        lambda: f"{kind}:{peer}",
        lambda: f"{ch}:{kind}:{peer}",
        lambda: f"{ch}:{acct}:{kind}:{peer}",
        lambda: f"{ch}:{acct}:{kind}:{peer}:{r.choice(KIND_VARIANTS)}:{_peer(r)}",
        lambda: f"{kind}:{ch}:{peer}",
        lambda: f"{ch}:{peer}:{kind}",
        lambda: f"{ch}::{kind}:{peer}",
        lambda: f"{ch}:{kind}::{peer}",
        lambda: f"{ch}:{kind}:",
        lambda: f":{ch}:{kind}:{peer}",
        lambda: f"{ch}:{kind}:{peer}:{r.choice(MARKERS)}:{r.choice(THREAD_IDS)}",
        lambda: f"{ch}:{kind}:{peer}:thread:{r.choice(THREAD_IDS)}:thread:{r.choice(THREAD_IDS)}",
        lambda: f"{_case(r, 'subagent')}:{r.choice(PEER_IDS)}",
        lambda: "subagent:u1:subagent:u2" + ":subagent:u3" * r.randint(0, 3),
        lambda: f"cron:{r.choice(PEER_IDS)}:run:{r.choice(THREAD_IDS)}",
        lambda: f"{_case(r, 'cron')}:{r.choice(PEER_IDS)}",
        lambda: f"acp:{peer}",
        lambda: f"{_case(r, 'whatsapp')}:{r.choice(PEER_IDS[7:10])}",
        lambda: r.choice(PEER_IDS[7:10]),
        lambda: f"whatsapp:{acct}:{r.choice(PEER_IDS[7:10])}",
        lambda: f"discord:{r.choice(['', acct + ':'])}guild-{peer}:channel-{_peer(r)}",
        lambda: (
            f"{_case(r, 'matrix')}:{_case(r, r.choice(['channel', 'group']))}:{r.choice(PEER_IDS[10:14])}"
            f"{r.choice(['', ':thread:', ':THREAD:', ':thread:' + r.choice(THREAD_IDS)])}"
        ),
        lambda: (
            f"{_case(r, 'signal')}:{_case(r, 'group')}:{r.choice(PEER_IDS[15:17])}"
            f"{r.choice(['', ':thread:T1', ':x:signal:group:AbC'])}"
        ),
        lambda: f"x:signal:group:{r.choice(PEER_IDS[15:17])}:signal:group: SpAcE ",
        lambda: f"group:{peer}",
        lambda: f"channel:{peer}",
        lambda: f"{_case(r, 'group')}:{peer}:{r.choice(KINDS)}:{_peer(r)}",
        lambda: ":".join(
            r.choice([*KINDS, *MARKERS, *CHANNELS, "", peer, "agent"]) for _ in range(r.randint(1, 8))
        ),
    ]
    return r.choice(shapes)()


def session_keys(r: random.Random, n: int) -> list[str | None]:
    fixed: list[str | None] = [
        None,
        "",
        " ",
        "agent",
        "agent:",
        "agent:a",
        "agent:a:",
        "agent:a::",
        "agent::main",
        "agent: a :main",
        "AGENT:A:MAIN",
        "agent:a:main ",
        " agent:a:main",
        "agent:a: main",
        "main",
        "global",
        "unknown",
        "subagent:x",
        "SUBAGENT:x",
        "subagent:",
        "agent:a:subagent:",
        "agent:a:cron:",
        "agent:a:cron",
        "cron:job",
        "agent:a:agent:b:main",
        "agent:a:discord:group:g1",
        "agent:a:discord:channel:c1",
        "agent:a:telegram:direct:b",
        "agent:a:whatsapp:dm:b",
        "discord:acct:guild-1:channel-2",
        "agent:a:whatsapp:120363@g.us",
        "120363@g.us",
        "whatsapp:120363@g.us",
        "agent:a:whatsapp:acct:120363@g.us",
        "agent:a:matrix:channel:!AbC:m.org:thread:$EvT",
        "agent:a:matrix:group:!AbC:THREAD:$EvT",
        "agent:a:agent:b:matrix:channel:!AbC",
        "agent:a:::matrix:channel:!AbC",
        "agent:a:signal:group:AbC+/=",
        "agent:a:signal:group: AbC :thread:X",
        "agent:a:direct:group:x",
        "agent:a:discord:direct:group:x",
        "agent:a:group:channel:x",
        "agent:a:discord:acct:direct:b:group:c",
        "agent:a:direct:",
        "agent:a:discord:group:",
        "agent:a:discord::group:x",
        "direct:x",
        "dm:x",
        "group:x",
        "channel:x",
        "group:",
        "group",
    ]
    return fixed + [_space(r, (_agent_prefix(r) if r.random() < 0.85 else "") + _body(r)) for _ in range(n)]


def ids(r: random.Random, n: int) -> list[str | None]:
    alphabet = "aZ09_-. :/é日ſK\u0130\u00a0\ufeff\x00\t@+!$"
    gen = ["".join(r.choice(alphabet) for _ in range(r.randint(0, 12))) for _ in range(n)]
    longs = ["a" * k for k in (63, 64, 65, 100)] + ["-" * 3 + "b" * 70 + "-", "é" * 70 + "x"]
    return [None, *AGENT_IDS, *ACCOUNT_IDS[1:], *PEER_IDS[:20], *longs, *gen]


def _peer_obj(r: random.Random) -> dict[str, Any] | None:
    if r.random() < 0.12:
        return None
    kind: Any = r.choice([*KIND_VARIANTS, None])
    pid: Any = r.choice([*PEER_IDS, 42, 0, 12345678901234])
    if r.random() < 0.3:
        pid = _case(r, str(pid))
    return {"kind": kind, "id": pid}


def builder_cases(r: random.Random, n: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    scopes = [None, "main", "per-peer", "per-channel-peer", "per-account-channel-peer", "bogus"]
    links = [
        None,
        {},
        {"alice": ["telegram:Alice", "discord:123"], "bob": ["+15551234567"]},
        {" Carol ": ["ALICE"], "": ["u123"], "dave": "u123"},
    ]
    for _ in range(n):
        out.append(
            (
                "buildAgentSessionKey",
                {
                    "agentId": r.choice(AGENT_IDS),
                    "channel": r.choice(CHANNEL_VARIANTS),
                    "accountId": r.choice(ACCOUNT_IDS),
                    "peer": _peer_obj(r),
                    "dmScope": r.choice(scopes),
                    "groupScope": r.choice([None, "main", "per-group"]),
                    "identityLinks": r.choice(links),
                    "mainKey": r.choice([None, "", "main", "Work", " HOME "]),
                },
            )
        )
    for _ in range(n // 3):
        out.append(
            (
                "resolveThreadSessionKeys",
                {
                    "baseSessionKey": r.choice(session_keys(r, 0)[5:]),
                    "threadId": r.choice([None, *THREAD_IDS]),
                    "parentSessionKey": r.choice([None, "agent:a:main", "P"]),
                    "useSuffix": r.choice([None, True, False]),
                },
            )
        )
        out.append(
            (
                "buildAgentMainSessionKey",
                {"agentId": r.choice(AGENT_IDS), "mainKey": r.choice([None, "", "Main", " Work ", "a:b"])},
            )
        )
        out.append(
            (
                "toAgentStoreSessionKey",
                {
                    "agentId": r.choice(AGENT_IDS),
                    "requestKey": r.choice([None, "main", "MAIN", " main "])
                    if r.random() < 0.2
                    else (_agent_prefix(r) if r.random() < 0.5 else "") + _body(r),
                    "mainKey": r.choice([None, "Work"]),
                },
            )
        )
        out.append(
            (
                "buildGroupHistoryKey",
                {
                    "channel": r.choice(CHANNEL_VARIANTS),
                    "accountId": r.choice(ACCOUNT_IDS),
                    "peerKind": r.choice(["group", "channel"]),
                    "peerId": r.choice(PEER_IDS),
                },
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Routing: generated configs (the same dicts clawmesh's parse_config loads) and inputs for them

R_CHANNELS = ["discord", "telegram", "slack", "whatsapp", "matrix"]
R_AGENTS = ["main", "a", "b", "c", "Ops"]
R_PEERS = ["c1", "C1", "u1", "g1", "!Room:m.org", "120363@g.us", "*"]
R_GUILDS = ["g1", "g2", "G1"]
R_TEAMS = ["t1", "t2"]
R_ROLES = ["r1", "r2", "r3"]
R_ACCOUNTS = ["default", "work", "Work", "*", "other"]


def _binding(r: random.Random, agents: list[str]) -> dict[str, Any]:
    match: dict[str, Any] = {
        "channel": _case(r, r.choice(R_CHANNELS)) if r.random() < 0.2 else r.choice(R_CHANNELS)
    }
    if r.random() < 0.6:
        match["accountId"] = r.choice(R_ACCOUNTS)
    pick = r.random()
    if pick < 0.35:
        match["peer"] = {"kind": r.choice(["direct", "dm", "group", "channel"]), "id": r.choice(R_PEERS)}
    if r.random() < 0.3:
        match["guildId"] = r.choice(R_GUILDS)
    if r.random() < 0.15:
        match["teamId"] = r.choice(R_TEAMS)
    if r.random() < 0.25:
        match["roles"] = r.sample(R_ROLES, r.randint(1, 2))
    # Only agents the roster has (in any case or padding): OpenClaw's `config validate` refuses
    # bindings to unknown agents, and so does clawmesh's loader.
    agent = r.choice(agents) if agents else "main"
    if r.random() < 0.15:
        agent = f" {agent.upper()} "
    binding: dict[str, Any] = {"agentId": agent, "match": match}
    if r.random() < 0.15:
        binding["session"] = r.choice(
            [{"dmScope": "per-peer"}, {"dmScope": "per-channel-peer"}, {"groupScope": "main"}]
        )
    return binding


def route_config(r: random.Random) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    agents = r.sample(R_AGENTS, r.randint(0, 4))
    if agents or r.random() < 0.5:
        default = r.choice([None, *agents]) if agents else None
        entries = []
        for a in agents:
            entry: dict[str, Any] = {"id": a}
            if a == default:
                entry["default"] = True
            entries.append(entry)
        cfg["agents"] = {"list": entries}
    cfg["bindings"] = [_binding(r, agents) for _ in range(r.randint(0, 7))]
    session: dict[str, Any] = {}
    if r.random() < 0.4:
        session["dmScope"] = r.choice(["main", "per-peer", "per-channel-peer", "per-account-channel-peer"])
    if r.random() < 0.2:
        session["groupScope"] = r.choice(["main", "per-group"])
    if r.random() < 0.2:
        session["mainKey"] = r.choice(["work", "Home"])
    if r.random() < 0.15:
        session["identityLinks"] = {"alice": ["telegram:u1", "discord:c1"], "bob": ["u1"]}
    if session:
        cfg["session"] = session
    return cfg


def route_config_keyed(r: random.Random) -> dict[str, Any]:
    """A config in OpenClaw 9.6's keyed roster form: `agents.entries`, sometimes with
    `ownership: "explicit"` and `defaults.systemAgent` (where `default: true` is retired)."""
    cfg = route_config(r)
    listed = cfg.get("agents", {}).get("list", [])
    agents: dict[str, Any] = {"entries": {e["id"]: {k: v for k, v in e.items() if k != "id"} for e in listed}}
    if listed and r.random() < 0.5:
        agents["ownership"] = "explicit"
        for entry in agents["entries"].values():
            entry.pop("default", None)
        if r.random() < 0.7:
            owner = r.choice(listed)["id"]
            agents["defaults"] = {"systemAgent": {"agentId": owner.upper() if r.random() < 0.2 else owner}}
    cfg["agents"] = agents
    return cfg


def route_inputs(r: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        inp: dict[str, Any] = {"channel": r.choice([*R_CHANNELS, "Discord", " slack ", "irc"])}
        if r.random() < 0.6:
            inp["accountId"] = r.choice([*R_ACCOUNTS, " WORK ", ""])
        if r.random() < 0.85:
            inp["peer"] = {
                "kind": r.choice(["direct", "dm", "group", "channel", "Group", "thread"]),
                "id": r.choice([*R_PEERS, "", " c1 ", "u2", 42, 1.5, 0, "\ufeffc1", "c1\u0085"]),
            }
        if r.random() < 0.15:
            inp["parentPeer"] = {
                "kind": r.choice(["group", "channel", "direct"]),
                "id": r.choice([*R_PEERS, ""]),
            }
        if r.random() < 0.4:
            inp["guildId"] = r.choice([*R_GUILDS, " g1 ", "", 1, 7.0])
        if r.random() < 0.2:
            inp["teamId"] = r.choice([*R_TEAMS, 3])
        if r.random() < 0.35:
            inp["memberRoleIds"] = r.sample(R_ROLES, r.randint(0, 3))
        if r.random() < 0.15:
            inp["dmScope"] = r.choice(["main", "per-peer", "per-channel-peer", "per-account-channel-peer"])
        if r.random() < 0.1:
            inp["groupScope"] = r.choice(["main", "per-group"])
        if r.random() < 0.1:
            inp["defaultAgentId"] = r.choice(["a", "B", "ghost", "main"])
        out.append(inp)
    return out


# ---------------------------------------------------------------------------------------------


def _node(oracle: Path) -> Path:
    node = oracle / "node_modules" / "node" / "bin" / "node"
    return node if node.exists() else Path("node")


def _refuse(message: str) -> None:
    print(f"oracle-fixtures: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    oracle = Path(os.environ.get("OPENCLAW_ORACLE_DIR", Path.home() / ".cache" / "openclaw-oracle"))
    pkg = oracle / "node_modules" / "openclaw" / "package.json"
    if not pkg.exists():
        _refuse(
            f"OpenClaw is not installed at {oracle} (no {pkg.relative_to(oracle)}). Install it as "
            "docs/openclaw-oracle.md says, or set OPENCLAW_ORACLE_DIR to its npm directory."
        )
    version = json.loads(pkg.read_text())["version"]
    if version != EXPECTED_VERSION:
        _refuse(f"OpenClaw {version} is installed at {oracle}; the fixture is pinned to {EXPECTED_VERSION}.")

    r = random.Random(SEED)
    cases: list[tuple[str, Any]] = []
    for key in session_keys(r, 2500):
        for fn in (
            "parseAgentSessionKey",
            "classifySessionKeyShape",
            "deriveSessionChatTypeFromKey",
            "getSubagentDepth",
            "isSubagentSessionKey",
            "isCronSessionKey",
        ):
            cases.append((fn, key))
    for value in ids(r, 400):
        for fn in (
            "normalizeAgentId",
            "isValidAgentId",
            "normalizeAccountId",
            "normalizeOptionalAccountId",
            "normalizeMainKey",
        ):
            cases.append((fn, value))
    cases += builder_cases(r, 1500)
    routes = [{"config": route_config(r), "inputs": route_inputs(r, 25)} for _ in range(250)]
    routes += [{"config": route_config_keyed(r), "inputs": route_inputs(r, 25)} for _ in range(100)]

    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        env = {**os.environ, "HOME": tmp, "OPENCLAW_STATE_DIR": tmp, "OPENCLAW_ORACLE_DIR": str(oracle)}
        request = Path(tmp) / "request.json"
        request.write_text(
            json.dumps({"cases": cases, "routes": routes}), encoding="utf-8", errors="surrogatepass"
        )
        done = subprocess.run(
            [str(_node(oracle)), str(SCRIPT), str(request)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=False,
        )
    if done.returncode != 0:
        _refuse(f"{SCRIPT.name} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    by_fn: dict[str, list[list[Any]]] = {}
    for (fn, inp), out in zip(cases, result["cases"], strict=True):
        by_fn.setdefault(fn, []).append([inp, out])
    fixture = {
        "openclaw": result["version"],
        "generator": "scripts/oracle/session_keys.py",
        "seed": SEED,
        "functions": by_fn,
        "routes": [
            {"config": rc["config"], "cases": [[i, o] for i, o in zip(rc["inputs"], outs, strict=True)]}
            for rc, outs in zip(routes, result["routes"], strict=True)
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(fixture, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8", "surrogatepass"
    )
    with OUT.open("wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(data)
    total = sum(len(v) for v in by_fn.values()) + sum(len(rc["cases"]) for rc in fixture["routes"])
    print(f"oracle-fixtures: wrote {total} cases from OpenClaw {version} to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
