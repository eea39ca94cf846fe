"""apply_patch: OpenClaw's patch format (add, update with @@ hunks and moves, delete), confined
to the workspace like the other file tools, planned whole before any file changes, each file
written atomically, and errors that name the hunk that did not apply."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clawmesh.tools.files import FileToolError, Workspace
from clawmesh.tools.patch import PatchError, apply_hunks, parse_patch
from clawmesh.tools.specs import TOOL_SCHEMAS, ApplyPatchArgs, ToolArgumentError, validate_tool_arguments


def _patch(*body: str) -> str:
    return "\n".join(["*** Begin Patch", *body, "*** End Patch"])


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.py").write_text("def main():\n    x = 1\n    return x\n\n\ndef other():\n    return 2\n")
    (root / "old.txt").write_text("bye\n")
    return Workspace(root)


def test_add_update_move_and_delete(ws: Workspace) -> None:
    result = ws.apply_patch(
        _patch(
            "*** Add File: docs/notes.md",
            "+# Notes",
            "+hello",
            "*** Update File: app.py",
            "@@ def main():",
            "-    x = 1",
            "+    x = 41",
            "+    x += 1",
            "@@ def other():",
            "-    return 2",
            "+    return 3",
            "*** Delete File: old.txt",
        )
    )
    assert result.splitlines() == [
        "Success. Updated the following files:",
        "A docs/notes.md",
        "M app.py",
        "D old.txt",
    ]
    assert (ws.root / "docs/notes.md").read_text() == "# Notes\nhello\n"
    assert (ws.root / "app.py").read_text() == (
        "def main():\n    x = 41\n    x += 1\n    return x\n\n\ndef other():\n    return 3\n"
    )
    assert not (ws.root / "old.txt").exists()
    ws.apply_patch(
        _patch("*** Update File: app.py", "*** Move to: src/main.py", "@@", " def main():", "+    pass")
    )
    assert not (ws.root / "app.py").exists()
    assert (ws.root / "src/main.py").read_text().startswith("def main():\n    pass\n    x = 41\n")
    # no temporary files are left behind
    assert sorted(p.name for p in ws.root.rglob("*")) == ["docs", "main.py", "notes.md", "src"]


def test_a_hunk_that_does_not_apply_is_named_and_nothing_changes(ws: Workspace) -> None:
    before = (ws.root / "app.py").read_text()
    with pytest.raises(FileToolError) as caught:
        ws.apply_patch(
            _patch(
                "*** Add File: new.txt",
                "+x",
                "*** Update File: app.py",
                "@@ def main():",
                "-    x = 1",
                "+    x = 2",
                "@@ def other():",
                "-    return 99",
                "+    return 3",
            )
        )
    assert caught.value.code == "NO_MATCH"
    assert (
        "hunk 2 (@@ def other():) of app.py: Failed to find expected lines in app.py:\n    return 99"
        in str(caught.value)
    )
    assert (ws.root / "app.py").read_text() == before and not (ws.root / "new.txt").exists()
    with pytest.raises(
        FileToolError, match=r"hunk 1 \(@@ def nowhere\(\):\) of app.py: Failed to find context"
    ):
        ws.apply_patch(_patch("*** Update File: app.py", "@@ def nowhere():", "-x", "+y"))


def test_paths_stay_inside_the_workspace(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret\n")
    for body in (
        ("*** Add File: ../escape.txt", "+x"),
        ("*** Delete File: ../outside.txt",),
        ("*** Update File: /etc/hostname", "@@", "-a", "+b"),
        ("*** Update File: app.py", "*** Move to: ../moved.py", "@@", " def main():", "+    pass"),
    ):
        with pytest.raises(FileToolError) as caught:
            ws.apply_patch(_patch(*body))
        assert caught.value.code == "OUTSIDE_WORKSPACE", body
    assert (tmp_path / "outside.txt").read_text() == "secret\n" and not (tmp_path / "escape.txt").exists()
    os.symlink(tmp_path, ws.root / "link")
    with pytest.raises(FileToolError, match="outside the agent workspace"):
        ws.apply_patch(_patch("*** Add File: link/via-symlink.txt", "+x"))
    assert not (tmp_path / "via-symlink.txt").exists()
    # a final symlink is deleted itself, never what it points to
    ws.apply_patch(_patch("*** Delete File: link"))
    assert not (ws.root / "link").exists() and (tmp_path / "outside.txt").exists()
    with pytest.raises(FileToolError, match="read-only"):
        Workspace(ws.root, writable=False).apply_patch(_patch("*** Add File: x.txt", "+x"))


def test_add_refuses_an_existing_file_unless_deleted_first(ws: Workspace) -> None:
    with pytest.raises(FileToolError) as caught:
        ws.apply_patch(_patch("*** Add File: old.txt", "+new"))
    assert caught.value.code == "ALREADY_EXISTS" and "Cannot create old.txt: the file already exists" in str(
        caught.value
    )
    ws.apply_patch(_patch("*** Delete File: old.txt", "*** Add File: old.txt", "+new"))
    assert (ws.root / "old.txt").read_text() == "new\n"
    with pytest.raises(FileToolError, match=r"Cannot delete gone\.txt: it does not exist"):
        ws.apply_patch(_patch("*** Delete File: gone.txt"))


def test_parse_errors_name_the_line() -> None:
    with pytest.raises(PatchError, match=r"The first line of the patch must be '\*\*\* Begin Patch'"):
        parse_patch("*** Update File: a\n@@\n-a\n+b\n*** End Patch")
    with pytest.raises(PatchError, match=r"The last line of the patch must be '\*\*\* End Patch'"):
        parse_patch("*** Begin Patch\n*** Add File: a\n+x")
    with pytest.raises(PatchError, match=r"line 2: '\*\*\* Rename File: a' is not a valid hunk header"):
        parse_patch(_patch("*** Rename File: a"))
    with pytest.raises(PatchError, match=r"line 2: Update file hunk for path 'a' is empty"):
        parse_patch(_patch("*** Update File: a"))
    with pytest.raises(PatchError, match="line 5: Expected update hunk to start with a @@ context marker"):
        parse_patch(_patch("*** Update File: a", "@@", "-a", "*b"))
    with pytest.raises(PatchError, match="Invalid patch: input is empty"):
        parse_patch("  \n")
    # a heredoc around the patch is accepted, as OpenClaw does
    assert len(parse_patch("<<'EOF'\n" + _patch("*** Add File: a", "+x") + "\nEOF")) == 1


def test_matching_is_tolerant_but_unique_and_keeps_the_files_bytes() -> None:
    hunks = parse_patch(_patch("*** Update File: f", "@@", " keep  ", "-old \u2014 text", "+new"))[0].hunks  # type: ignore[union-attr]
    text = "\ufeffkeep\r\nold - text\r\nend"
    assert apply_hunks(text, hunks, "f") == "\ufeffkeep\r\nnew\r\nend"
    dup = parse_patch(_patch("*** Update File: f", "@@", "-x", "+y"))[0].hunks  # type: ignore[union-attr]
    with pytest.raises(PatchError, match="Found 2 occurrences of these lines in f"):
        apply_hunks("x\nx\n", dup, "f")
    eof = parse_patch(_patch("*** Update File: f", "@@", "+last", "*** End of File"))[0].hunks  # type: ignore[union-attr]
    assert apply_hunks("a\nb\n", eof, "f") == "a\nb\nlast\n"


def test_the_tool_argument_is_openclaws_input() -> None:
    args = validate_tool_arguments("apply_patch", {"input": _patch("*** Add File: a", "+x")})
    assert isinstance(args, ApplyPatchArgs)
    with pytest.raises(ToolArgumentError, match="input"):
        validate_tool_arguments("apply_patch", {"patch": "x"})
    assert TOOL_SCHEMAS["apply_patch"].parameters["required"] == ["input"]
