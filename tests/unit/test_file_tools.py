"""File tools stay inside their workspace; exec on the host is bounded and streamed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clawmesh.tools.files import FileToolError, Workspace
from clawmesh.tools.host_exec import host_environment, run_on_host
from clawmesh.tools.specs import ExecArgs, ToolArgumentError, parse_arguments
from tests.fixtures.gateway import wait_until


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("one\ntwo\nthree\n")
    (root / "sub").mkdir()
    (root / "sub" / "a.py").write_text("print('a')\n")
    (tmp_path / "secret.txt").write_text("top secret")
    return Workspace(root)


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "/workspace/../secret.txt", "", "a\x00b"],
)
def test_paths_leaving_the_workspace_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(FileToolError) as err:
        ws.read(path)
    assert err.value.code in ("outside_workspace", "invalid_path")


def test_symlinks_leading_out_are_refused_but_inner_ones_work(ws: Workspace, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", ws.root / "escape")
    os.symlink(tmp_path, ws.root / "escape-dir")
    os.symlink(ws.root / "notes.txt", ws.root / "inner")
    for path in ("escape", "escape-dir/secret.txt"):
        with pytest.raises(FileToolError) as err:
            ws.read(path)
        assert "symlink" in str(err.value)
    with pytest.raises(FileToolError):
        ws.write("escape-dir/new.txt", "x")
    assert not (tmp_path / "new.txt").exists()
    assert ws.read("inner").startswith("one")
    assert "escape" not in ws.glob("*")


def test_read_write_edit_ls_glob(ws: Workspace) -> None:
    assert ws.read("notes.txt", offset=2, limit=1) == "two\n"
    assert ws.read("/workspace/notes.txt").startswith("one")  # the sandbox's view of the same file
    assert ws.read(str(ws.root / "notes.txt")).startswith("one")  # absolute, but inside
    assert "wrote 5 bytes" in ws.write("new/dir/file.txt", "hello")
    assert (ws.root / "new" / "dir" / "file.txt").read_text() == "hello"
    ws.write("e.txt", "a b a")
    with pytest.raises(FileToolError) as err:
        ws.edit("e.txt", "a", "x")
    assert err.value.code == "ambiguous" and "2 times" in str(err.value)
    with pytest.raises(FileToolError) as err:
        ws.edit("e.txt", "zzz", "x")
    assert err.value.code == "no_match"
    ws.edit("e.txt", "a b", "c b")
    assert (ws.root / "e.txt").read_text() == "c b a"
    ws.edit("e.txt", "b", "B", replace_all=True)
    assert ws.ls(".").splitlines() == ["e.txt", "new/", "notes.txt", "sub/"]
    assert ws.glob("**/*.py") == "sub/a.py"
    with pytest.raises(FileToolError):
        ws.glob("../*")


def test_read_only_workspace_refuses_changes(ws: Workspace) -> None:
    ro = Workspace(ws.root, writable=False)
    assert ro.read("notes.txt")
    for attempt in (lambda: ro.write("x", "y"), lambda: ro.edit("notes.txt", "one", "1")):
        with pytest.raises(FileToolError) as err:
            attempt()
        assert err.value.code == "read_only"


def test_binary_and_missing_files(ws: Workspace) -> None:
    (ws.root / "bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(FileToolError) as err:
        ws.read("bin")
    assert err.value.code == "binary"
    with pytest.raises(FileToolError) as err:
        ws.read("missing")
    assert err.value.code == "not_found"


def test_argument_validation_names_the_problem() -> None:
    assert isinstance(parse_arguments("exec", {"command": "ls"}), ExecArgs)
    with pytest.raises(ToolArgumentError, match="give `command`"):
        parse_arguments("exec", {})
    with pytest.raises(ToolArgumentError, match=r"\$\.path"):
        parse_arguments("read", {"path": 5})
    with pytest.raises(ToolArgumentError, match="oldText"):
        parse_arguments("edit", {"path": "x", "newText": "y"})
    with pytest.raises(ToolArgumentError, match="not a JSON object"):
        parse_arguments("read", {"__invalid_arguments__": "{oops"})


def _dead(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "State:\tZ" in status or "State:\tX" in status


async def test_host_exec_streams_caps_and_times_out(tmp_path: Path) -> None:
    chunks: list[tuple[str, str]] = []

    async def on_output(stream: str, text: str) -> None:
        chunks.append((stream, text))

    env = host_environment({"GREETING": "hi"}, tmp_path)
    res = await run_on_host(
        "echo $GREETING; echo oops >&2; exit 3", cwd=tmp_path, env=env, timeout=10, on_output=on_output
    )
    assert (res.exit_code, res.stdout, res.stderr) == (3, "hi\n", "oops\n")
    assert ("stdout", "hi\n") in chunks and ("stderr", "oops\n") in chunks
    assert "ANTHROPIC_API_KEY" not in env and env["HOME"] == str(tmp_path)

    big = await run_on_host(
        ["sh", "-c", "yes x | head -c 100000"], cwd=tmp_path, env=env, timeout=10, max_output=1000
    )
    assert big.truncated and len(big.stdout) == 1000

    pidfile = tmp_path / "child.pid"
    slow = await run_on_host(f"sleep 60 & echo $! > {pidfile}; sleep 30", cwd=tmp_path, env=env, timeout=2)
    assert slow.timed_out and slow.exit_code is None and slow.duration < 5
    # the background child died with its process group (gone, or a zombie awaiting its reaper)
    # SIGKILL is delivered asynchronously: poll until it has landed.
    child = int(pidfile.read_text())
    await wait_until(lambda: _dead(child), timeout=10, message=f"background child {child} to die")
    missing = await run_on_host(["no-such-program-xyz"], cwd=tmp_path, env=env, timeout=5)
    assert missing.exit_code == 127
