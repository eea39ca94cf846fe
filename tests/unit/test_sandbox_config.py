"""Sandbox settings without Docker: OpenClaw's defaults and precedence, hashing, refused binds,
and the problems the config loader reports."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, ConfigError, parse_config
from clawmesh.sandbox import (
    AGENT_MOUNT,
    DEFAULT_IMAGE,
    EffectiveSandbox,
    config_checks,
    container_hash,
    container_name,
    effective_problems,
    host_workspace,
    path_refusal,
    resolve_sandbox,
    validate_binds,
    workspace_mounts,
)
from clawmesh.sandbox._docker import create_kwargs
from clawmesh.sandbox._layout import Mount


def config(tmp_path: Path, defaults: dict[str, Any] | None = None, *agents: dict[str, Any]) -> Config:
    data: dict[str, Any] = {"agents": {}}
    if defaults is not None:
        data["agents"]["defaults"] = {"sandbox": defaults}
    data["agents"]["list"] = list(agents) or [{"id": "a"}]
    return parse_config(data, env={"HOME": str(tmp_path)}, checks=default_checks())


# -- resolution -------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    s = resolve_sandbox(cfg, "a")
    assert (s.mode, s.scope, s.workspace_access) == ("off", "agent", "none")
    assert s.workspace_root == cfg.state_dir / "sandboxes" == tmp_path / ".clawmesh" / "sandboxes"
    assert s.image == DEFAULT_IMAGE == "clawmesh-sandbox:bookworm"
    assert (s.container_prefix, s.workdir, s.read_only_root) == ("clawmesh-sbx-", "/workspace", True)
    assert s.tmpfs == ("/tmp", "/var/tmp", "/run")
    assert (s.network, s.user, s.cap_drop) == ("none", None, ("ALL",))
    assert dict(s.env) == {"LANG": "C.UTF-8"}
    assert (s.setup_command, s.pids_limit, s.memory, s.memory_swap, s.cpus) == (None,) * 5
    assert (dict(s.ulimits), s.binds, s.dns, s.extra_hosts) == ({}, (), (), ())
    assert (s.seccomp_profile, s.apparmor_profile) == (None, None)
    assert (s.prune_idle_hours, s.prune_max_age_days) == (24.0, 7.0)
    assert s.home == tmp_path


def test_unknown_agent(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        resolve_sandbox(config(tmp_path), "nobody")


def test_agent_overrides_defaults_key_by_key(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {
            "mode": "non-main",
            "workspaceAccess": "ro",
            "workspaceRoot": "~/boxes",
            "docker": {
                "image": "global:img",
                "network": "bridge",
                "memory": "256m",
                "pidsLimit": 64,
                "env": {"A": "1", "SHARED": "global"},
                "ulimits": {"nofile": 100, "nproc": 50},
                "binds": ["/srv/global:/g:ro"],
                "tmpfs": ["/tmp"],
            },
            "prune": {"idleHours": 2, "maxAgeDays": 3},
        },
        {"id": "a"},
        {
            "id": "b",
            "sandbox": {
                "mode": "all",
                "docker": {
                    "image": "agent:img",
                    "env": {"B": "2", "SHARED": "agent"},
                    "ulimits": {"nofile": 200},
                    "binds": ["/srv/agent:/a"],
                    "cpus": 0.5,
                },
                "prune": {"idleHours": 1},
            },
        },
    )
    a, b = resolve_sandbox(cfg, "a"), resolve_sandbox(cfg, "b")
    assert (a.mode, a.image, a.workspace_access) == ("non-main", "global:img", "ro")
    assert a.workspace_root == tmp_path / "boxes"
    assert (b.mode, b.image, b.network) == ("all", "agent:img", "bridge")  # network from global
    assert (b.memory, b.memory_swap, b.pids_limit, b.cpus) == ("256m", "256m", 64, 0.5)
    # the global env replaces the {LANG} default; the agent's is merged over it
    assert dict(a.env) == {"A": "1", "SHARED": "global"}
    assert dict(b.env) == {"A": "1", "SHARED": "agent", "B": "2"}
    assert dict(b.ulimits) == {"nofile": 200, "nproc": 50}
    assert a.binds == ("/srv/global:/g:ro",)
    assert b.binds == ("/srv/global:/g:ro", "/srv/agent:/a")  # merged, global first
    assert b.tmpfs == ("/tmp",)  # replaced, not merged
    assert (b.prune_idle_hours, b.prune_max_age_days) == (1.0, 3.0)


def test_agent_env_alone_keeps_the_lang_default(tmp_path: Path) -> None:
    cfg = config(tmp_path, None, {"id": "a", "sandbox": {"docker": {"env": {"B": "2"}}}})
    assert dict(resolve_sandbox(cfg, "a").env) == {"LANG": "C.UTF-8", "B": "2"}


def test_memory_swap_explicit_and_numeric_memory(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"docker": {"memory": 134217728, "memorySwap": "512m"}})
    s = resolve_sandbox(cfg, "a")
    assert (s.memory, s.memory_swap) == ("134217728", "512m")


def test_shared_scope_ignores_per_agent_docker_and_prune(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {"scope": "shared", "docker": {"image": "global:img"}, "prune": {"idleHours": 5}},
        {
            "id": "a",
            "sandbox": {
                "mode": "all",
                "docker": {"image": "agent:img", "binds": ["/srv/x:/x"]},
                "prune": {"idleHours": 1},
            },
        },
    )
    s = resolve_sandbox(cfg, "a")
    assert (s.scope, s.mode) == ("shared", "all")  # non-docker keys still apply per agent
    assert (s.image, s.binds, s.prune_idle_hours) == ("global:img", (), 5.0)


def test_agent_scope_shared_ignores_its_own_docker_too(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, None, {"id": "a", "sandbox": {"scope": "shared", "docker": {"image": "agent:img"}}}
    )
    assert resolve_sandbox(cfg, "a").image == DEFAULT_IMAGE


@pytest.mark.parametrize(
    ("defaults", "agent", "scope"),
    [
        ({"perSession": True}, None, "session"),
        ({"perSession": False}, None, "shared"),
        (None, {"perSession": True}, "session"),
        ({"perSession": True}, {"perSession": False}, "shared"),
        ({"scope": "agent"}, {"perSession": True}, "agent"),  # an explicit scope beats legacy perSession
        ({"perSession": False}, {"scope": "session"}, "session"),
        (None, None, "agent"),
    ],
)
def test_legacy_per_session(
    tmp_path: Path, defaults: dict[str, Any] | None, agent: dict[str, Any] | None, scope: str
) -> None:
    entry: dict[str, Any] = {"id": "a"}
    if agent is not None:
        entry["sandbox"] = agent
    assert resolve_sandbox(config(tmp_path, defaults, entry), "a").scope == scope


@pytest.mark.parametrize(
    ("mode", "main", "other"),
    [("off", False, False), ("all", True, True), ("non-main", False, True)],
)
def test_applies_to(mode: str, main: bool, other: bool) -> None:
    s = EffectiveSandbox(mode=mode)  # type: ignore[arg-type]
    assert s.applies_to("agent:a:main", "agent:a:main") is main
    assert s.applies_to("agent:a:discord:group:g1", "agent:a:main") is other
    assert s.applies_to("Agent:A:Main", "agent:a:main") is main  # keys compare case-insensitively


# -- hashing ----------------------------------------------------------------------------------


def test_config_hash_is_stable(tmp_path: Path) -> None:
    a = resolve_sandbox(config(tmp_path, {"docker": {"env": {"X": "1", "Y": "2"}}}), "a")
    b = resolve_sandbox(config(tmp_path, {"docker": {"env": {"Y": "2", "X": "1"}}}), "a")
    assert a.config_hash() == b.config_hash() == a.config_hash()
    assert len(a.config_hash()) == 24
    assert hash(a) == hash(b) and a == b


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image", "other:img"),
        ("network", "bridge"),
        ("memory", "1g"),
        ("memory_swap", "2g"),
        ("pids_limit", 10),
        ("cpus", 1.5),
        ("user", "1000:1000"),
        ("read_only_root", False),
        ("tmpfs", ("/tmp",)),
        ("cap_drop", ("NET_RAW",)),
        ("env", {"LANG": "C"}),
        ("ulimits", {"nofile": 10}),
        ("binds", ("/srv:/srv",)),
        ("dns", ("1.1.1.1",)),
        ("extra_hosts", ("db:10.0.0.1",)),
        ("seccomp_profile", "/p.json"),
        ("apparmor_profile", "prof"),
        ("setup_command", "true"),
        ("workdir", "/work"),
        ("workspace_access", "rw"),
        ("workspace_root", Path("/elsewhere")),
        ("scope", "session"),
        ("container_prefix", "x-"),
    ],
)
def test_config_hash_changes_with_every_shaping_key(key: str, value: Any) -> None:
    base = EffectiveSandbox(home=Path("/home/u"))
    assert dataclasses.replace(base, **{key: value}).config_hash() != base.config_hash()


@pytest.mark.parametrize(
    ("key", "value"),
    [("mode", "all"), ("prune_idle_hours", 1.0), ("prune_max_age_days", 1.0), ("home", Path("/other"))],
)
def test_config_hash_ignores_what_does_not_shape_the_container(key: str, value: Any) -> None:
    base = EffectiveSandbox(home=Path("/home/u"))
    assert dataclasses.replace(base, **{key: value}).config_hash() == base.config_hash()


def test_container_hash_includes_the_agent_workspace_only_when_mounted(tmp_path: Path) -> None:
    none = EffectiveSandbox(workspace_access="none")
    assert container_hash(none, agent_workspace=tmp_path / "x") == container_hash(
        none, agent_workspace=tmp_path / "y"
    )
    rw = EffectiveSandbox(workspace_access="rw")
    assert container_hash(rw, agent_workspace=tmp_path / "x") != container_hash(
        rw, agent_workspace=tmp_path / "y"
    )


# -- layout -----------------------------------------------------------------------------------


def test_container_names_per_scope() -> None:
    agent = EffectiveSandbox(scope="agent", container_prefix="p-")
    session = EffectiveSandbox(scope="session", container_prefix="p-")
    shared = EffectiveSandbox(scope="shared", container_prefix="p-")
    assert container_name(agent, agent_id="Work", session_key="k1") == "p-agent-work"
    assert container_name(agent, agent_id="work", session_key="k2") == "p-agent-work"
    s1 = container_name(session, agent_id="work", session_key="agent:work:main")
    s2 = container_name(session, agent_id="work", session_key="agent:work:discord:group:1")
    assert s1 != s2 and s1.startswith("p-session-work-") and len(s1) == len("p-session-work-") + 16
    assert container_name(shared, agent_id="a", session_key="x") == container_name(
        shared, agent_id="b", session_key="y"
    )
    # an agent called "shared" does not collide with the shared container
    assert container_name(agent, agent_id="shared", session_key="k") != container_name(
        shared, agent_id="a", session_key="k"
    )


def test_workspace_mounts_and_host_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "agent-ws"
    root = tmp_path / "boxes"
    kw: dict[str, Any] = {"agent_id": "a", "session_key": "agent:a:main", "agent_workspace": ws}
    none = EffectiveSandbox(workspace_access="none", workspace_root=root)
    assert workspace_mounts(none, **kw) == (Mount(root / "agent-a", "/workspace", False),)
    assert host_workspace(none, **kw) == (root / "agent-a", True)
    ro = EffectiveSandbox(workspace_access="ro", workspace_root=root)
    assert workspace_mounts(ro, **kw) == (
        Mount(root / "agent-a", "/workspace", False),
        Mount(ws, AGENT_MOUNT, True),
    )
    assert host_workspace(ro, **kw) == (ws, False)  # write/edit are disabled
    rw = EffectiveSandbox(workspace_access="rw", workspace_root=root, workdir="/w")
    assert workspace_mounts(rw, **kw) == (Mount(ws, "/w", False),)
    assert host_workspace(rw, **kw) == (ws, True)
    shared = EffectiveSandbox(scope="shared", workspace_root=root)
    assert host_workspace(shared, **kw) == (root / "shared", True)


def test_create_kwargs_lock_the_container_down(tmp_path: Path) -> None:
    s = EffectiveSandbox(
        memory="64m",
        pids_limit=16,
        cpus=0.5,
        ulimits={"nofile": {"soft": 10, "hard": 20}, "nproc": "5:6", "core": 0},
        tmpfs=("/tmp", "/run", "/cache:rw,size=1m"),
        extra_hosts=("db:10.0.0.1",),
        apparmor_profile="docker-default",
    )
    kw = create_kwargs(
        s, name="n", labels={"l": "1"}, mounts=(Mount(tmp_path, "/workspace", False),), user="0:0"
    )
    assert kw["command"] == ["sleep", "2147483647"] and kw["init"] is True
    assert (kw["network_mode"], kw["read_only"], kw["cap_drop"]) == ("none", True, ["ALL"])
    assert kw["security_opt"] == ["no-new-privileges", "apparmor=docker-default"]
    assert kw["tmpfs"] == {
        "/tmp": "rw,nosuid,nodev,size=64m,mode=1777",
        "/run": "rw,nosuid,nodev,size=64m",
        "/cache": "rw,size=1m",
    }
    assert (kw["mem_limit"], kw["memswap_limit"], kw["nano_cpus"], kw["pids_limit"]) == (
        "64m",
        "64m",
        500_000_000,
        16,
    )
    assert sorted((u.name, u.soft, u.hard) for u in kw["ulimits"]) == [
        ("core", 0, 0),
        ("nofile", 10, 20),
        ("nproc", 5, 6),
    ]
    assert kw["extra_hosts"] == {"db": "10.0.0.1"}
    assert "volumes" not in kw
    assert [(m["Target"], m["Source"], m["ReadOnly"]) for m in kw["mounts"]] == [
        ("/workspace", str(tmp_path), False)
    ]


# -- binds ------------------------------------------------------------------------------------


def test_fine_binds(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert (
        validate_binds([f"{tmp_path}/data:/data:ro", f"{tmp_path}/data:/d2:rw", "/srv/x:/x"], home=tmp_path)
        == []
    )
    assert validate_binds(["~/projects:/p"], home=tmp_path) == []


@pytest.mark.parametrize(
    "spec",
    [
        "data:/data",  # relative
        "myvolume:/data",  # a named volume
        "/:/host",
        "/var/run/docker.sock:/var/run/docker.sock",
        "/run/docker.sock:/s",
        "/opt/engine/docker.sock:/s",  # any path ending in docker.sock
        "/etc:/host-etc",
        "/etc/passwd:/x",
        "/proc:/p",
        "/proc/1/root:/p",
        "/sys:/s",
        "/sys/fs/cgroup:/c",
        "/dev:/d",
        "/dev/sda:/d",
        "/boot:/b",
        "/root:/r",
        "/root/.bashrc:/r",
        "/run:/r",
        "/var/run:/r",
        "/var:/v",  # contains /var/run
        "/var/lib/docker:/v",
        "~/.ssh:/k",
        "~/.ssh/x:/k",
        "~/.aws:/a",
        "~/.aws/credentials:/a",
        "~:/home",  # contains ~/.ssh
        "/srv/x:relative",  # target not absolute
        "/srv/x:/proc/x",  # covers a system path in the container
        "/srv/x:/",
        "/srv/x:/x:z",  # relabels host files
        "/srv/x:/x:ro:extra",
        "/srv/x",
    ],
)
def test_refused_binds(tmp_path: Path, spec: str) -> None:
    problems = validate_binds([spec], home=tmp_path)
    assert len(problems) >= 1, spec
    assert all(p.startswith(f"bind {spec!r}: ") for p in problems)


def test_home_is_the_given_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    [problem] = validate_binds([f"{home}/.ssh/id_ed25519:/k"], home=home)
    assert "inside ~/.ssh" in problem


def test_symlink_to_etc_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    [problem] = validate_binds([f"{link}:/data:ro"], home=tmp_path / "home")
    assert "resolves to /etc" in problem
    # a symlink deeper in the path counts too
    [problem] = validate_binds([f"{link}/ssl:/data"], home=tmp_path / "home")
    assert "resolves to /etc/ssl" in problem


def test_symlink_to_ssh_and_to_the_socket_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (tmp_path / "keys").symlink_to(home / ".ssh")
    (tmp_path / "engine").symlink_to("/var/run/docker.sock")
    problems = validate_binds([f"{tmp_path}/keys:/k", f"{tmp_path}/engine:/e"], home=home)
    assert len(problems) == 2
    assert "~/.ssh" in problems[0] and "docker.sock" in problems[1]


def test_workspaces_under_a_root_home_may_be_mounted() -> None:
    root = Path("/root")
    assert path_refusal("/root/.clawmesh/workspace", home=root, allow_home=True) is None
    assert path_refusal("/root/.clawmesh/sandboxes/agent-a", home=root, allow_home=True) is None
    # binds keep OpenClaw's rule, and the home itself or its credentials are never mountable
    assert path_refusal("/root/.clawmesh/workspace", home=root) is not None
    assert "~/.ssh" in (path_refusal("/root", home=root, allow_home=True) or "")
    assert path_refusal("/root/.aws/x", home=root, allow_home=True) is not None
    assert path_refusal("/etc", home=root, allow_home=True) is not None


def test_reserved_targets(tmp_path: Path) -> None:
    [problem] = validate_binds(["/srv/x:/workspace/"], home=tmp_path, reserved_targets=["/workspace"])
    assert "workspace" in problem


def test_effective_problems_refuse_escapes(tmp_path: Path) -> None:
    ok = EffectiveSandbox(home=tmp_path)
    assert effective_problems(ok) == []
    for change in (
        {"network": "host"},
        {"network": "container:abc"},
        {"network": "HOST"},
        {"seccomp_profile": "unconfined"},
        {"apparmor_profile": "unconfined"},
        {"binds": ("/etc:/e",)},
        {"binds": ("/srv:/workspace",)},
        {"binds": ("/srv:/agent",)},
        {"memory": "lots"},
        {"memory_swap": "1g", "memory": None},
        {"pids_limit": 0},
        {"cpus": 0.0},
        {"workdir": "relative"},
        {"tmpfs": ("tmp",)},
        {"container_prefix": "-bad/"},
        {"ulimits": {"nofile": "many"}},
        {"env": {"A=B": "x"}},
    ):
        assert effective_problems(dataclasses.replace(ok, **change)), change


# -- problems for the config loader -----------------------------------------------------------


def test_problems_carry_json_paths(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    # the config loader runs these checks and refuses the file, listing every problem
    with pytest.raises(ConfigError) as refused:
        config(
            tmp_path,
            {"docker": {"binds": ["/srv/ok:/ok", "/etc:/e"], "seccompProfile": "unconfined"}},
            {"id": "a"},
            {
                "id": "b",
                "sandbox": {
                    "docker": {"binds": [f"{tmp_path}/link:/data", "~/.ssh/x:/k"], "memorySwap": "1g"}
                },
            },
        )
    errors = {p.path: p.message for p in refused.value.problems if p.severity == "error"}
    assert set(errors) == {
        "$.agents.defaults.sandbox.docker.binds[1]",
        "$.agents.defaults.sandbox.docker.seccompProfile",
        "$.agents.list[1].sandbox.docker.binds[0]",
        "$.agents.list[1].sandbox.docker.binds[1]",
        "$.agents.list[1].sandbox.docker.memorySwap",
    }
    assert "resolves to /etc" in errors["$.agents.list[1].sandbox.docker.binds[0]"]
    assert "~/.ssh" in errors["$.agents.list[1].sandbox.docker.binds[1]"]


def test_no_problems_for_a_plain_config(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"mode": "all", "docker": {"binds": ["~/projects:/p:ro"], "memory": "512m"}})
    assert config_checks(cfg) == []


def test_state_dir_secrets_are_protected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        config(
            tmp_path,
            {
                "docker": {
                    "binds": ["~/.clawmesh:/state", "~/.clawmesh/agents/a:/x", "~/.clawmesh/workspace-b:/b"]
                }
            },
        )
    errors = [p.path for p in refused.value.problems if p.severity == "error"]
    # the state dir holds auth profiles and transcripts; another agent's workspace is fine
    assert errors == [
        "$.agents.defaults.sandbox.docker.binds[0]",
        "$.agents.defaults.sandbox.docker.binds[1]",
    ]


def test_warnings(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {"scope": "shared", "docker": {"env": {"GITHUB_TOKEN": "x", "OPENAI_API_KEY": "y", "PATH": "/bin"}}},
        {"id": "a", "sandbox": {"docker": {"image": "mine"}, "prune": {"idleHours": 1}}},
    )
    warnings = {p.path: p.message for p in config_checks(cfg) if p.severity == "warning"}
    assert set(warnings) == {
        "$.agents.defaults.sandbox.docker.env.GITHUB_TOKEN",
        "$.agents.defaults.sandbox.docker.env.OPENAI_API_KEY",
        "$.agents.list[0].sandbox.docker",
        "$.agents.list[0].sandbox.prune",
    }
    assert "ignored" in warnings["$.agents.list[0].sandbox.docker"]


def test_shared_scope_with_different_workspaces_warns(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        {"mode": "all", "scope": "shared", "workspaceAccess": "rw"},
        {"id": "a"},
        {"id": "b"},
    )
    [problem] = config_checks(cfg)
    assert (problem.path, problem.severity) == ("$.agents.defaults.sandbox.scope", "warning")
    same = config(tmp_path, {"mode": "all", "scope": "shared"}, {"id": "a"}, {"id": "b"})
    assert config_checks(same) == []


def test_workspace_root_is_expanded(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"workspaceRoot": "~/sb"})
    assert resolve_sandbox(cfg, "a").workspace_root == tmp_path / "sb"
    assert os.path.isabs(resolve_sandbox(config(tmp_path), "a").workspace_root)
