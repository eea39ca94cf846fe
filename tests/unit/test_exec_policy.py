"""OpenClaw's exec policy for host commands: parsing, allowlist matching, safe bins, the
stricter-of rule between config and the host's approvals document, allow-always entries, the
settings they come from, and the unprivileged user host commands run as under root."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, ConfigError, ExecSettings, parse_config
from clawmesh.execpolicy import (
    AllowlistEntry,
    ApprovalsFile,
    ApprovalsFileError,
    HostPolicy,
    allow_always_entries,
    evaluate,
    split_command,
)
from clawmesh.tools import host_exec
from clawmesh.tools.host_exec import host_environment, resolve_run_as, run_on_host

PATH = "/usr/local/bin:/usr/bin:/bin"
ALLOWLIST = ExecSettings(security="allowlist", ask="off")


def parse(data: dict[str, Any]) -> Config:
    return parse_config(data, checks=default_checks(), env={})


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(data)
    return [str(p) for p in err.value.problems]


def decide(command: str | list[str], *entries: str, settings: ExecSettings = ALLOWLIST, **host: Any) -> str:
    policy = HostPolicy(allowlist=tuple(AllowlistEntry(e) for e in entries), **host)
    return evaluate(settings, policy, command, cwd=Path("/tmp"), path_env=PATH).action


class TestSplitCommand:
    def test_chains_and_pipelines(self) -> None:
        segments = split_command("echo 'a b' && ls -l | wc -l; pwd")
        assert segments is not None
        assert [[s.argv for s in p] for p in segments] == [
            [("echo", "a b")],
            [("ls", "-l"), ("wc", "-l")],
            [("pwd",)],
        ]

    @pytest.mark.parametrize(
        "command",
        [
            "cat > out",
            "cat < /etc/passwd",
            "echo $(id)",
            "echo `id`",
            'echo "$(id)"',
            "(id)",
            "sleep 1 &",
            "ls |",
            "echo ${X:-$(id)}",
            "echo 'open",
        ],
    )
    def test_what_the_allowlist_cannot_reason_about_is_unparseable(self, command: str) -> None:
        assert split_command(command) is None

    def test_single_quotes_keep_dollar_paren_literal_and_expansions_are_marked(self) -> None:
        segments = split_command("echo '$(id)' \"$HOME\" *.txt")
        assert segments is not None
        stage = segments[0][0]
        assert stage.argv == ("echo", "$(id)", "$HOME", "*.txt")
        assert stage.expands == (False, False, True, True)


class TestAllowlist:
    def test_bare_names_match_commands_found_through_path_only(self, tmp_path: Path) -> None:
        assert decide("ls -la", "ls") == "run"
        copy = tmp_path / "ls"
        copy.write_bytes(Path("/bin/ls").read_bytes())
        copy.chmod(0o755)
        assert decide(str(copy), "ls") == "deny"  # `/tmp/…/ls` is not the bare `ls`

    def test_path_globs_match_the_resolved_executable(self) -> None:
        resolved = os.path.realpath("/usr/bin/id")
        assert decide("id -u", os.path.dirname(resolved) + "/*") == "run"
        assert decide("id -u", "/opt/**/id") == "deny"
        assert decide(["id", "-u"], "/usr/**") == "run"

    def test_every_segment_must_match(self) -> None:
        assert decide("ls && id", "ls", "id") == "run"
        assert decide("ls && id", "ls") == "deny"
        assert decide("ls; cat /etc/passwd", "ls") == "deny"

    def test_redirections_and_substitutions_miss_even_when_the_binary_is_allowlisted(self) -> None:
        assert decide("ls > out", "ls") == "deny"
        assert decide("ls $(id)", "ls") == "deny"
        assert decide("FOO=1 ls", "ls") == "deny"

    def test_arg_pattern_restricts_arguments(self) -> None:
        policy = HostPolicy(allowlist=(AllowlistEntry("id", arg_pattern=r"^-u$"),))
        run = evaluate(ALLOWLIST, policy, "id -u", cwd=Path("/tmp"), path_env=PATH)
        miss = evaluate(ALLOWLIST, policy, "id -g", cwd=Path("/tmp"), path_env=PATH)
        assert (run.action, miss.action) == ("run", "deny")


class TestSafeBins:
    @pytest.mark.parametrize(
        "command", ["ls | wc -l", "ls | head -n 5", "ls | tail -n2", "ls | tr a-z A-Z", "ls | cut -d: -f1"]
    )
    def test_stdin_filters_run_without_an_entry(self, command: str) -> None:
        assert decide(command, "ls") == "run"

    @pytest.mark.parametrize(
        "command",
        [
            "wc /etc/passwd",
            "ls | head /etc/shadow",
            "ls | tail -f",
            "ls | wc --files0-from=x",
            "ls | sort",
            "ls | head -n $X",
            "ls | tr",
            "ls | wc -l *",
        ],
    )
    def test_file_operands_denied_flags_and_unlisted_bins_miss(self, command: str) -> None:
        assert decide(command, "ls") == "deny"

    def test_configured_safe_bins_replace_the_defaults_and_never_include_sed(self) -> None:
        config = parse({"tools": {"exec": {"mode": "allowlist", "safeBins": ["sort", "sed"]}}})
        assert config.settings.exec.safe_bins == ("sort",)
        assert any("never a safe bin" in p.message for p in config.warnings)
        assert decide("ls | sort", "ls", settings=config.settings.exec) == "run"
        assert decide("ls | wc -l", "ls", settings=config.settings.exec) == "deny"

    def test_custom_safe_bins_need_a_profile(self) -> None:
        config = parse(
            {"tools": {"exec": {"safeBins": ["nl", "od"], "safeBinProfiles": {"nl": {"maxPositional": 0}}}}}
        )
        assert config.settings.exec.safe_bins == ("nl",)
        assert any("needs a profile" in p.message and "od" in p.message for p in config.warnings)


class TestPolicy:
    def test_full_runs_anything_and_deny_refuses_everything(self) -> None:
        assert decide("rm -rf ./x > y", settings=ExecSettings()) == "run"
        assert decide("ls", "ls", settings=ExecSettings(security="deny")) == "deny"

    def test_ask_on_miss_asks_only_for_misses_and_always_asks(self) -> None:
        on_miss = ExecSettings(security="allowlist", ask="on-miss")
        assert decide("ls", "ls", settings=on_miss) == "run"
        assert decide("id", "ls", settings=on_miss) == "ask"
        assert decide("ls", "ls", settings=ExecSettings(security="allowlist", ask="always")) == "ask"
        # OpenClaw: full + on-miss never prompts (there is no allowlist to miss)
        assert decide("id", settings=ExecSettings(security="full", ask="on-miss")) == "run"

    def test_the_host_document_can_only_tighten(self) -> None:
        assert decide("id", settings=ExecSettings(), security="allowlist") == "deny"
        assert decide("id", settings=ExecSettings(), ask="always") == "ask"
        assert decide("id", "id", settings=ExecSettings(security="deny"), security="full") == "deny"


class TestSettings:
    def test_default_is_openclaws_full_without_approval(self) -> None:
        exec_ = parse({}).settings.exec
        assert (exec_.security, exec_.ask, exec_.host) == ("full", "off", "auto")
        assert exec_.unapproved_host_exec and exec_.approval_timeout == 1800.0
        assert exec_.run_as == "nobody" and not exec_.allow_root

    @pytest.mark.parametrize(
        ("mode", "security", "ask"),
        [
            ("deny", "deny", "off"),
            ("allowlist", "allowlist", "off"),
            ("ask", "allowlist", "on-miss"),
            ("auto", "allowlist", "on-miss"),
            ("full", "full", "off"),
        ],
    )
    def test_mode_means_openclaws_security_and_ask(self, mode: str, security: str, ask: str) -> None:
        exec_ = parse({"tools": {"exec": {"mode": mode}}}).settings.exec
        assert (exec_.security, exec_.ask, exec_.mode) == (security, ask, mode)

    def test_agents_override_the_global_policy(self) -> None:
        config = parse(
            {
                "tools": {"exec": {"mode": "ask", "approvalTimeoutSeconds": 60}},
                "agents": {
                    "list": [
                        {"id": "ops", "tools": {"exec": {"mode": "full", "host": "gateway"}}},
                        {"id": "bot"},
                    ]
                },
            }
        )
        ops, bot = config.agent_view("ops"), config.agent_view("bot")
        assert ops is not None and bot is not None
        assert (ops.exec.security, ops.exec.ask, ops.exec.approval_timeout) == ("full", "off", 60)
        assert ops.exec.unapproved_host_exec and not bot.exec.unapproved_host_exec
        assert (bot.exec.security, bot.exec.ask) == ("allowlist", "on-miss")

    def test_legacy_security_and_ask_work_but_not_mixed_with_mode(self) -> None:
        exec_ = parse({"tools": {"exec": {"security": "allowlist", "ask": "always"}}}).settings.exec
        assert (exec_.security, exec_.ask) == ("allowlist", "always")
        problems = errors(
            {"agents": {"list": [{"id": "a", "tools": {"exec": {"mode": "full", "ask": "off"}}}]}}
        )
        assert any(
            p.startswith("$.agents.list[0].tools.exec.mode:") and "cannot be combined" in p for p in problems
        )

    @pytest.mark.parametrize(
        ("exec_", "where"),
        [
            ({"mode": "yolo"}, "$.tools.exec.mode"),
            ({"ask": "sometimes"}, "$.tools.exec.ask"),
            ({"approvalTimeoutSeconds": 0}, "$.tools.exec.approvalTimeoutSeconds"),
            ({"runAs": "root"}, "$.tools.exec.runAs"),
            ({"safeBinTrustedDirs": ["bin"]}, "$.tools.exec.safeBinTrustedDirs[0]"),
        ],
    )
    def test_bad_values_name_their_path(self, exec_: dict[str, Any], where: str) -> None:
        assert any(p.startswith(where) for p in errors({"tools": {"exec": exec_}}))


class TestApprovalsFile:
    def test_policy_layers_agent_over_defaults(self, tmp_path: Path) -> None:
        doc = {
            "version": 1,
            "defaults": {"security": "allowlist", "askFallback": "allowlist"},
            "agents": {"main": {"ask": "always", "allowlist": [{"pattern": "rg", "argPattern": "^x$"}]}},
        }
        (tmp_path / "exec-approvals.json").write_text(json.dumps(doc))
        policy = ApprovalsFile(tmp_path).policy("main")
        assert (policy.security, policy.ask, policy.ask_fallback) == ("allowlist", "always", "allowlist")
        assert policy.allowlist == (AllowlistEntry("rg", "^x$"),)
        other = ApprovalsFile(tmp_path).policy("other")
        assert (other.security, other.ask, other.allowlist) == ("allowlist", None, ())

    def test_a_missing_document_changes_nothing_and_a_bad_one_names_the_problem(self, tmp_path: Path) -> None:
        assert ApprovalsFile(tmp_path).policy("main") == HostPolicy()
        (tmp_path / "exec-approvals.json").write_text('{"defaults": {"security": "yolo"}}')
        with pytest.raises(
            ApprovalsFileError, match=r"defaults\.security: expected one of deny\|allowlist\|full"
        ):
            ApprovalsFile(tmp_path).policy("main")

    def test_allow_always_entries_are_bound_to_argv_and_cwd_and_stored_0600(self, tmp_path: Path) -> None:
        entries = allow_always_entries("id -u | wc -l", cwd=tmp_path, path_env=PATH)
        assert [os.path.basename(e.pattern) for e in entries] == ["id", "wc"]
        store = ApprovalsFile(tmp_path)
        store.add("main", entries)
        store.add("main", entries)  # no duplicates
        path = tmp_path / "exec-approvals.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        saved = json.loads(path.read_text())["agents"]["main"]["allowlist"]
        assert len(saved) == 2 and all(e["source"] == "allow-always" for e in saved)
        policy = store.policy("main")
        run = lambda cmd, cwd: evaluate(ALLOWLIST, policy, cmd, cwd=cwd, path_env=PATH).action  # noqa: E731
        assert run("id -u | wc -l", tmp_path) == "run"
        assert run("id -g | wc -l", tmp_path) == "deny"  # other arguments
        assert run("id -u | wc -l", tmp_path / "elsewhere") == "deny"  # another directory

    def test_commands_that_cannot_be_bound_persist_nothing(self, tmp_path: Path) -> None:
        assert allow_always_entries("echo $HOME", cwd=tmp_path, path_env=PATH) == []
        assert allow_always_entries("ls > x", cwd=tmp_path, path_env=PATH) == []


class TestRunAs:
    def test_not_root_or_allowed_root_keeps_the_current_user(self) -> None:
        assert resolve_run_as("nobody", allow_root=False, euid=1000) is None
        assert resolve_run_as("nobody", allow_root=True, euid=0) is None

    def test_root_drops_to_the_configured_user(self) -> None:
        run_as = resolve_run_as("nobody", allow_root=False, euid=0)
        assert run_as is not None and run_as.uid != 0 and run_as.name == "nobody"
        with pytest.raises(LookupError, match="no user 'no-such-user-x'"):
            resolve_run_as("no-such-user-x", allow_root=False, euid=0)

    @pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
    @pytest.mark.parametrize("setpriv", [True, False])
    def test_the_child_runs_unprivileged(self, setpriv: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        if not setpriv:
            monkeypatch.setattr(host_exec, "_SETPRIV", None)
        run_as = resolve_run_as("nobody", allow_root=False, euid=0)
        result = asyncio.run(
            run_on_host(
                "id -u; id -G",
                cwd=Path("/"),
                env=host_environment(None, Path("/")),
                timeout=30,
                run_as=run_as,
            )
        )
        assert result.exit_code == 0, result.stderr
        uid, groups = result.stdout.split("\n")[:2]
        assert run_as is not None and int(uid) == run_as.uid != 0
        assert groups.split() == [str(run_as.gid)]  # root's groups are gone


class TestExposure:
    def test_root_nodes_name_the_user_commands_run_as(self) -> None:
        from clawmesh.execpolicy import unapproved_host_exec

        config = parse(
            {
                "agents": {
                    "list": [
                        {"id": "a", "tools": {"exec": {"runAs": "daemon"}}},
                        {"id": "b", "tools": {"exec": {"allowRoot": True}}},
                        {"id": "c", "tools": {"exec": {"host": "sandbox"}}},
                    ]
                }
            }
        )
        exposed = {e.agent_id: e.runs_as for e in unapproved_host_exec(config, None, euid=0)}
        assert exposed == {"a": "daemon", "b": "root"}
        as_user = {e.agent_id: e.runs_as for e in unapproved_host_exec(config, None, euid=4242)}
        assert set(as_user) == {"a", "b"} and "root" not in as_user.values()


def test_host_exec_env_refuses_what_chooses_the_binary_or_injects_code() -> None:
    from clawmesh.tools.host_exec import blocked_env_name

    assert all(
        blocked_env_name(k) for k in ("PATH", "LD_PRELOAD", "DYLD_INSERT_LIBRARIES", "BASH_ENV", "ENV")
    )
    assert not any(blocked_env_name(k) for k in ("LANG", "TERM", "MY_PATH", "NO_COLOR"))


def test_a_command_string_runs_without_a_login_shell_when_asked(tmp_path: Path) -> None:
    (tmp_path / ".profile").write_text("echo from-profile\n")
    env = host_environment(None, tmp_path)
    login = asyncio.run(run_on_host("echo cmd", cwd=tmp_path, env=env, timeout=30))
    plain = asyncio.run(run_on_host("echo cmd", cwd=tmp_path, env=env, timeout=30, login=False))
    assert login.stdout == "from-profile\ncmd\n" and plain.stdout == "cmd\n"
