"""`clawmesh up`'s banner says where the HTTP token lives and never prints the token."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.gateway import gateway_token
from clawmesh_gateway._up import banner_lines, cli_command

URL = "http://127.0.0.1:18789"


def _lines(raw: dict[str, object], tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    config = parse_config(raw, checks=default_checks(), env={"HOME": str(tmp_path), **(env or {})})
    token = gateway_token(config, create=True)
    lines = banner_lines(config, URL, "nats://127.0.0.1:18790", True, 0.5)
    if token:
        assert not any(token in line for line in lines), lines
    return lines


def test_a_stored_token_is_named_by_its_file_and_the_curl_line_reads_it(tmp_path: Path) -> None:
    lines = _lines({}, tmp_path)
    token_path = tmp_path / ".clawmesh" / "gateway-token"
    assert token_path.stat().st_mode & 0o777 == 0o600
    assert f"token in {token_path}" in lines[1]
    curl = next(line for line in lines if "curl" in line)
    # The header the banner suggests gives the stored token when a shell expands it.
    header = curl.split('-H "', 1)[1].split('"', 1)[0]
    expanded = subprocess.run(
        ["sh", "-c", f'printf %s "{header}"'], capture_output=True, text=True, check=True
    )
    assert expanded.stdout == f"Authorization: Bearer {token_path.read_text().strip()}"


def test_a_token_from_the_environment_is_named_by_its_variable(tmp_path: Path) -> None:
    lines = _lines({}, tmp_path, env={"CLAWMESH_GATEWAY_TOKEN": "s3cret-from-env"})
    assert "token in $CLAWMESH_GATEWAY_TOKEN" in lines[1]
    assert not any("s3cret-from-env" in line for line in lines)


def test_a_token_in_the_config_is_named_by_its_key(tmp_path: Path) -> None:
    lines = _lines({"gateway": {"auth": {"token": "s3cret-in-config"}}}, tmp_path)
    assert "gateway.auth.token" in lines[1]
    assert not any("s3cret-in-config" in line for line in lines)


def test_no_auth_says_so(tmp_path: Path) -> None:
    lines = _lines({"gateway": {"auth": {"mode": "none"}}}, tmp_path)
    assert "(no auth)" in lines[1]
    assert not any("Authorization" in line for line in lines)


def test_the_banner_shows_a_command_a_new_shell_can_run(tmp_path: Path) -> None:
    config = parse_config({}, checks=default_checks(), env={"HOME": str(tmp_path)})
    cli = cli_command(path_env="/nonexistent")  # a new shell whose PATH does not have the venv
    assert cli != "clawmesh"
    lines = banner_lines(config, URL, "nats://x", True, 0.5, cli)
    send = next(line for line in lines if " send " in line).split("#")[0].strip()
    assert send.startswith(cli)
    done = subprocess.run(
        ["/bin/sh", "-c", f"{cli} --version"], capture_output=True, text=True, env={"PATH": "/nonexistent"}
    )
    assert done.returncode == 0 and done.stdout.startswith("clawmesh "), done
    hint = next(line for line in lines if "export PATH=" in line)
    path = hint.split("export PATH=", 1)[1].split(":$PATH", 1)[0]
    found = subprocess.run(
        ["/bin/sh", "-c", "command -v clawmesh"],
        capture_output=True,
        text=True,
        env={"PATH": shlex_unquote(path)},
    )
    assert found.returncode == 0, hint


def test_the_bare_name_when_path_finds_this_clawmesh() -> None:
    assert cli_command(path_env=str(Path(sys.executable).parent)) == "clawmesh"


def shlex_unquote(text: str) -> str:
    return shlex.split(text)[0]


def test_the_banner_names_the_agents_that_run_host_commands_unapproved(tmp_path: Path) -> None:
    raw = {
        "agents": {
            "list": [
                {"id": "ops", "tools": {"exec": {"mode": "full"}}},
                {"id": "bot", "tools": {"exec": {"mode": "ask"}}},
                {"id": "quiet", "tools": {"deny": ["exec"]}},
                {"id": "boxed", "sandbox": {"mode": "all"}},
            ]
        }
    }
    [line] = [line for line in _lines(raw, tmp_path) if "host exec" in line]
    assert "UNAPPROVED" in line and "ops (as " in line
    assert not any(name in line for name in ("bot", "quiet", "boxed"))
    [line] = [
        line for line in _lines({"tools": {"exec": {"mode": "allowlist"}}}, tmp_path) if "host exec" in line
    ]
    assert "no agent runs host commands without approval" in line


def test_the_hosts_approvals_document_can_take_an_agent_off_the_list(tmp_path: Path) -> None:
    state = tmp_path / ".clawmesh"
    state.mkdir()
    (state / "exec-approvals.json").write_text('{"version": 1, "agents": {"main": {"ask": "always"}}}')
    [line] = [line for line in _lines({}, tmp_path) if "host exec" in line]
    assert "no agent runs host commands without approval" in line
