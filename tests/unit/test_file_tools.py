"""File tools stay inside their workspace; exec on the host is bounded and streamed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from clawmesh.tools.files import FileToolError, Workspace
from clawmesh.tools.host_exec import host_environment, run_on_host
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
    assert err.value.code in ("OUTSIDE_WORKSPACE", "INVALID_PATH")


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
    assert err.value.code == "AMBIGUOUS" and "2 times" in str(err.value)
    with pytest.raises(FileToolError) as err:
        ws.edit("e.txt", "zzz", "x")
    assert err.value.code == "NO_MATCH"
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
        assert err.value.code == "READ_ONLY"


def test_binary_and_missing_files(ws: Workspace) -> None:
    (ws.root / "bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(FileToolError) as err:
        ws.read("bin")
    assert err.value.code == "BINARY"
    with pytest.raises(FileToolError) as err:
        ws.read("missing")
    assert err.value.code == "NOT_FOUND"


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
    # timed out without waiting for the 30 s sleep (no tight bound: a loaded machine is slow)
    assert slow.timed_out and slow.exit_code is None and slow.duration < 25
    # the background child died with its process group (gone, or a zombie awaiting its reaper)
    # SIGKILL is delivered asynchronously: poll until it has landed.
    child = int(pidfile.read_text())
    await wait_until(lambda: _dead(child), timeout=10, message=f"background child {child} to die")
    missing = await run_on_host(["no-such-program-xyz"], cwd=tmp_path, env=env, timeout=5)
    assert missing.exit_code == 127


def test_fifos_and_sockets_are_refused_without_blocking(ws: Workspace) -> None:
    """A FIFO with no writer would block `open` forever: it must be refused at once."""
    os.mkfifo(ws.root / "pipe")
    results: list[str] = []

    def attempt() -> None:
        for op in (lambda: ws.read("pipe"), lambda: ws.write("pipe", "x"), lambda: ws.edit("pipe", "a", "b")):
            try:
                op()
            except FileToolError as exc:
                results.append(exc.code)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the old behaviour so the test fails instead of hanging
        for _ in range(3):
            with contextlib.suppress(OSError):
                os.close(os.open(ws.root / "pipe", os.O_RDWR | os.O_NONBLOCK))
        worker.join(10)
    assert results == ["NOT_REGULAR"] * 3
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(ws.root / "sock"))
        with pytest.raises(FileToolError) as err:
            ws.read("sock")
        assert err.value.code == "NOT_REGULAR"
    assert ws.ls(".").splitlines() == ["notes.txt", "pipe", "sock", "sub/"]


def test_a_symlink_swapped_in_during_reads_never_leaks_outside_content(ws: Workspace, tmp_path: Path) -> None:
    """A thread swaps `swap` (a file) and `dir` (a directory) for symlinks to the outside while
    reads run: a read may fail, but it never returns the outside content."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("OUTSIDE")
    (ws.root / "swap").write_text("inside")
    (ws.root / "dir").mkdir()
    (ws.root / "dir" / "f.txt").write_text("inside")
    stop = threading.Event()

    def swapper() -> None:
        root = ws.root
        while not stop.is_set():
            os.symlink(outside / "f.txt", root / "swap.link")
            os.replace(root / "swap.link", root / "swap")  # file → symlink, atomically
            (root / "swap.tmp").write_text("inside")
            os.replace(root / "swap.tmp", root / "swap")  # symlink → file
            os.rename(root / "dir", root / "dir.real")
            os.symlink(outside, root / "dir")
            os.unlink(root / "dir")
            os.rename(root / "dir.real", root / "dir")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as often as possible
    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    leaked, ok, rounds = 0, 0, 0
    try:
        for rounds in range(1, 2_001):  # noqa: B007 (reported below); the old code leaked within ~200
            for path in ("swap", "dir/f.txt"):
                try:
                    text = ws.read(path)
                except (FileToolError, OSError):
                    continue
                leaked += text == "OUTSIDE"
                ok += text == "inside"
            if leaked:
                break
    finally:
        stop.set()
        thread.join(10)
        sys.setswitchinterval(interval)
    assert leaked == 0, f"{leaked} read(s) returned outside content within {rounds} rounds"
    assert ok > 0  # the swaps did not simply make every read fail


async def test_host_exec_returns_when_an_escaped_process_holds_its_output_open(tmp_path: Path) -> None:
    pidfile = tmp_path / "escaped.pid"
    env = host_environment(None, tmp_path)
    try:
        res = await asyncio.wait_for(
            run_on_host(
                f"setsid sleep 60 & echo $! > {pidfile}; echo started", cwd=tmp_path, env=env, timeout=10
            ),
            30,
        )
        assert res.exit_code == 0 and res.stdout == "started\n"
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
