"""`clawmesh up` as a user runs it: one process, embedded NATS, CLI talking to it, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.files import replace_unseen
from tests.fixtures.gateway import ROOT

CLI = [sys.executable, "-m", "clawmesh_gateway"]
CONFIG = {
    "agents": {"defaults": {"model": "echo/e2e"}, "list": [{"id": "home", "default": True}, {"id": "work"}]},
    "bindings": [{"agentId": "work", "match": {"channel": "api", "accountId": "work"}}],
    "gateway": {"auth": {"token": "e2e-token"}},
}


class Up:
    def __init__(self, home: Path, config: Path, *extra: str) -> None:
        self.env = {
            **os.environ,
            "HOME": str(home),
            "CLAWMESH_STATE_DIR": str(home / "state"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        self.config = config
        self.proc = subprocess.Popen(
            [*CLI, "--config", str(config), "up", "--port", "0", "--nats-port", "0", "--json-ready", *extra],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until ready (or the process dies)
        if not line:
            raise AssertionError(
                f"clawmesh up exited: {self.proc.wait(10)}\n{self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.ready: dict[str, Any] = json.loads(line)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*CLI, "--config", str(self.config), *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, cwd=ROOT)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "clawmesh.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture
def up(tmp_path: Path, config_file: Path) -> Iterator[Up]:
    gateway = Up(tmp_path, config_file)
    try:
        yield gateway
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)


def test_up_serves_cli_and_stops_cleanly(up: Up) -> None:
    url, nats = up.ready["url"], up.ready["nats"]
    assert up.ready["ready"] is True and up.ready["readySeconds"] > 0
    sent = up.cli("send", "--url", url, "hello from the cli")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == "echo: hello from the cli"
    work = up.cli("send", "--url", url, "--account", "work", "--json", "for work")
    events = [json.loads(line) for line in work.stdout.splitlines()]
    route = next(e["data"] for e in events if e["event"] == "route")
    assert route["agentId"] == "work" and events[-1]["event"] == "final"
    status = up.cli("status", "--nats-url", nats, "--json")
    assert status.returncode == 0, status.stderr
    names = sorted(s["name"] for s in json.loads(status.stdout)["services"])
    assert {"clawmesh-ingress", "clawmesh-router", "clawmesh-runner"} <= set(names)
    bad = up.cli("send", "--url", url, "--agent", "ghost", "x")
    assert bad.returncode == 1 and "unknown agent 'ghost'" in bad.stderr
    assert up.stop() == 0


def test_restart_keeps_sessions(tmp_path: Path, config_file: Path) -> None:
    first = Up(tmp_path, config_file)
    try:
        assert (
            first.cli("send", "--url", first.ready["url"], "--peer", "direct:pat", "remember me").returncode
            == 0
        )
    finally:
        assert first.stop() == 0
    second = Up(tmp_path, config_file)
    try:
        nats = second.ready["nats"]
        listed = second.cli("sessions", "list", "--nats-url", nats, "--json")
        sessions = json.loads(listed.stdout)
        assert [s["sessionKey"] for s in sessions] == ["agent:home:main"]
        assert (
            second.cli(
                "send", "--url", second.ready["url"], "--peer", "direct:pat", "still there?"
            ).returncode
            == 0
        )
        history = json.loads(
            second.cli("sessions", "history", "agent:home:main", "--nats-url", nats, "--json").stdout
        )
        assert [h["text"] for h in history if h["role"] == "user"] == ["remember me", "still there?"]
        exported = second.cli("sessions", "export", str(tmp_path / "export"), "--nats-url", nats)
        assert exported.returncode == 0, exported.stderr
        files = list((tmp_path / "export" / "agents" / "home" / "sessions").glob("*.jsonl"))
        assert len(files) == 1
        lines = [json.loads(line) for line in files[0].read_text().splitlines()]
        assert lines[0]["type"] == "session" and [m["message"]["role"] for m in lines[1:]] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]
    finally:
        assert second.stop() == 0


def test_up_against_an_existing_nats(tmp_path: Path, config_file: Path, nats_url: str) -> None:
    gateway = Up(tmp_path, config_file, "--nats-url", nats_url)
    try:
        assert gateway.ready["nats"] == nats_url
        assert gateway.cli("send", "--url", gateway.ready["url"], "hi").stdout.strip() == "echo: hi"
    finally:
        assert gateway.stop() == 0


def test_sighup_reloads_and_chat_reads_stdin(tmp_path: Path, config_file: Path) -> None:
    gateway = Up(tmp_path, config_file)
    try:
        url = gateway.ready["url"]
        before = json.loads(
            gateway.cli("send", "--url", url, "--channel", "slack", "--json", "x").stdout.splitlines()[0]
        )
        assert before["data"]["agentId"] == "home"
        changed = {
            **CONFIG,
            "bindings": [*CONFIG["bindings"], {"agentId": "work", "match": {"channel": "slack"}}],
        }
        # Same mtime as before: the file watcher cannot see this edit, only SIGHUP can.
        replace_unseen(config_file, json.dumps(changed))
        gateway.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while True:  # poll: the reload is asynchronous to the signal
            route = json.loads(
                gateway.cli("send", "--url", url, "--channel", "slack", "--json", "y").stdout.splitlines()[0]
            )
            if route["data"]["agentId"] == "work":
                break
            assert time.monotonic() < deadline, "SIGHUP did not reload the config"
        chat = subprocess.run(
            [*CLI, "--config", str(config_file), "chat", "--url", url],
            input="first line\nsecond line\n/exit\n",
            env=gateway.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert chat.returncode == 0, chat.stderr
        # stdin is not a terminal: no banner, no prompts, only the replies
        assert chat.stdout.splitlines() == ["echo: first line", "echo: second line"]
    finally:
        assert gateway.stop() == 0


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


class Demo(Up):
    """`clawmesh up --demo` with no --config: the CLI finds it through the state dir.
    (`demo=False`: a bare `clawmesh up`, on built-in defaults.)"""

    def __init__(self, home: Path, *, demo: bool = True) -> None:
        self.env = {
            **os.environ,
            "HOME": str(home),
            "CLAWMESH_STATE_DIR": str(home / "state"),
            "NO_COLOR": "1",
        }
        self.env.pop("CLAWMESH_CONFIG_PATH", None)
        self.env.pop("CLAWMESH_NATS_URL", None)
        self.env.pop("CLAWMESH_GATEWAY_URL", None)
        self.proc = subprocess.Popen(
            [*CLI, "up", *(["--demo"] if demo else []), "--port", "0", "--nats-port", "0", "--json-ready"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"clawmesh up exited: {self.proc.wait(10)}\n{self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.ready = json.loads(line)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(self.env, *args)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    gateway = Demo(tmp_path)
    try:
        yield gateway
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)


def test_cli_without_config_describes_and_reaches_the_running_demo(demo: Demo) -> None:
    listed = demo.cli("agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["id"] for a in json.loads(listed.stdout)] == ["home", "work"]
    routed = demo.cli("route", "--channel", "api", "--account", "work", "--json")
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["agentId"] == "work"
    shown = demo.cli("config", "show", "--json")
    assert [a["id"] for a in json.loads(shown.stdout)["agents"]["list"]] == ["home", "work"]
    assert demo.cli("tools", "explain", "--agent", "work").returncode == 0
    # URL, NATS port (random here) and credentials come from the state dir, not the defaults
    reloaded = demo.cli("config", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "router" in reloaded.stdout
    sent = demo.cli("send", "--agent", "work", "hi")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == "echo: hi"
    status = demo.cli("status", "--json")
    assert status.returncode == 0, status.stderr


def test_a_bare_up_on_built_in_defaults_is_reached_by_the_commands_its_banner_shows(tmp_path: Path) -> None:
    """No config anywhere: `clawmesh up` runs on built-in defaults, and `clawmesh send` (the
    banner's first suggestion) said "config file not found" for the default path instead of
    reaching it. It reaches it: the default model has no API key here, and says so."""
    gateway = Demo(tmp_path, demo=False)
    try:
        assert not (tmp_path / "state" / "clawmesh.json").exists()
        listed = gateway.cli("agents", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [a["id"] for a in json.loads(listed.stdout)] == ["main"]
        sent = gateway.cli("send", "hello")
        assert "config file not found" not in sent.stderr
        assert sent.returncode == 1 and "no API key for openai" in sent.stderr, sent.stderr
        status = gateway.cli("status", "--json")
        assert status.returncode == 0, status.stderr
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)


def test_second_up_on_the_same_state_dir_refuses_and_a_stale_lock_is_replaced(
    tmp_path: Path, demo: Demo
) -> None:
    second = _run(demo.env, "up", "--demo", "--port", "0", "--nats-port", "0", "--json-ready")
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.count("\n") == 1 and "already running" in second.stderr
    assert str(demo.proc.pid) in second.stderr
    assert demo.proc.poll() is None  # the first one is untouched
    assert demo.stop() == 0
    state = tmp_path / "state"
    assert not (state / "gateway.json").exists()
    assert list(state.glob("nats-server*.conf")) == []
    # a record left by a killed gateway (its pid is gone) does not block the next start
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / "gateway.json").write_text(json.dumps({"pid": dead.pid, "config": None}))
    (state / "nats-server-123-abc.conf").write_text("# left by a killed start\n")
    again = Demo(tmp_path)
    try:
        assert again.cli("agents", "list", "--json").returncode == 0
        assert list(state.glob("nats-server-*.conf")) == []
    finally:
        assert again.stop() == 0


def test_up_takes_config_after_the_command(tmp_path: Path, config_file: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [*CLI, "up", "--config", str(config_file), "--port", "0", "--nats-port", "0", "--json-ready"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["ready"] is True
        record = json.loads((tmp_path / "state" / "gateway.json").read_text())
        assert record["config"] == str(config_file) and record["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_client_errors_exit_non_zero(demo: Demo) -> None:
    chat = _run(demo.env, "chat", "--agent", "nosuch", stdin="hello\n")
    assert chat.returncode == 1 and "unknown agent 'nosuch'" in chat.stderr
    assert chat.stdout == ""  # checked before reading anything: no prompt, no turn
    typo = demo.cli("send", "--agent", "wrok", "hi")
    assert typo.returncode == 1
    assert "did you mean 'work'?" in typo.stderr and "configured: home, work" in typo.stderr
    history = demo.cli("sessions", "history", "agent:home:nosuch")
    assert history.returncode == 1 and "no transcript" in history.stderr
    tools = demo.cli("tools", "explain", "--agent", "nosuch")
    assert tools.returncode == 1 and "unknown agent 'nosuch'" in tools.stderr
    piped = _run(demo.env, "chat", "--agent", "work", stdin="one\ntwo\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == ["echo: one", "echo: two"]
