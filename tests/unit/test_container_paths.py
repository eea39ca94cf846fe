"""Container paths: where a sandboxed command starts, and that a path the model spells as the
container sees it (`/workspace/sub/a.txt`) names the same host file for the file tools (which
run on the node, outside the container) as for a command inside the container."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from clawmesh.sandbox import (
    AGENT_MOUNT,
    EffectiveSandbox,
    Mount,
    WorkspaceAccess,
    container_workdir,
    host_workspace,
    workspace_mounts,
)
from clawmesh.tools.files import FileToolError, Workspace


@pytest.mark.parametrize(
    ("workdir", "requested", "expected"),
    [
        ("/workspace", None, "/workspace"),
        ("/workspace", "", "/workspace"),
        ("/workspace", "sub", "/workspace/sub"),
        ("/workspace", "./sub/deeper/", "/workspace/sub/deeper"),
        ("/workspace", ".", "/workspace"),
        ("/workspace", "/workspace", "/workspace"),
        ("/workspace", "/workspace/sub", "/workspace/sub"),
        ("/srv/work", "sub", "/srv/work/sub"),
        ("/srv/work", "/srv/work/sub", "/srv/work/sub"),
        ("/srv/work/", "/srv/work/sub", "/srv/work/sub"),
    ],
)
def test_workdirs_inside_the_workspace(workdir: str, requested: str | None, expected: str) -> None:
    assert container_workdir(workdir, requested) == expected


@pytest.mark.parametrize(
    "requested",
    [
        "/etc",
        "/",
        "/workspacex",  # a sibling whose name starts like the workdir
        "..",
        "../other",
        "sub/../../other",
        "sub/..",  # stays inside, but `..` is refused whatever it resolves to
        "/workspace/../etc",
        "/workspace/sub/..",
    ],
)
def test_workdirs_that_could_leave_the_workspace_are_refused(requested: str) -> None:
    assert container_workdir("/workspace", requested) is None


def _host_path(mounts: tuple[Mount, ...], container_path: str) -> Path:
    """Where a container path lives on the host, through the most specific mount."""
    path = PurePosixPath(container_path)
    for mount in sorted(mounts, key=lambda m: len(m.container), reverse=True):
        under = PurePosixPath(mount.container)
        if path == under or under in path.parents:
            return mount.host / path.relative_to(under)
    raise AssertionError(f"{container_path} is on no mount")


def _layout(sandbox: EffectiveSandbox, agent_workspace: Path) -> tuple[tuple[Mount, ...], Path, bool]:
    """What the container mounts, and the host directory (and writability) of the file tools."""
    where = {"agent_id": "work", "session_key": "agent:work:main"}
    mounts = workspace_mounts(sandbox, **where, agent_workspace=agent_workspace)
    root, writable = host_workspace(sandbox, **where, agent_workspace=agent_workspace)
    return mounts, root, writable


@pytest.mark.parametrize("access", ["none", "rw"])
@pytest.mark.parametrize("workdir", ["/workspace", "/srv/work"])
def test_file_tools_and_commands_see_the_same_files(
    tmp_path: Path, access: WorkspaceAccess, workdir: str
) -> None:
    sandbox = EffectiveSandbox(
        workspace_access=access, workdir=workdir, workspace_root=tmp_path / "sandboxes"
    )
    mounts, root, writable = _layout(sandbox, tmp_path / "agent")
    assert writable
    assert _host_path(mounts, workdir) == root
    # A file made on the host where the container sees /<workdir>/sub/a.txt …
    cwd = container_workdir(workdir, "sub")
    assert cwd is not None
    _host_path(mounts, cwd).mkdir(parents=True)
    (_host_path(mounts, cwd) / "a.txt").write_text("made in the container\n")
    # … is what the file tools read, by the container's spelling or relative to the workspace.
    tools = Workspace(root, writable=writable, aliases=(workdir,))
    for spelling in (f"{cwd}/a.txt", "sub/a.txt"):
        assert tools.read(spelling) == "made in the container\n"
    # and what they write is where a command in the container finds it.
    tools.write(f"{workdir}/sub/b.txt", "from the node")
    assert (_host_path(mounts, f"{cwd}/b.txt")).read_text() == "from the node"


def test_read_only_access_lends_the_agent_workspace_read_only(tmp_path: Path) -> None:
    sandbox = EffectiveSandbox(workspace_access="ro", workspace_root=tmp_path / "sandboxes")
    agent = tmp_path / "agent"
    mounts, root, writable = _layout(sandbox, agent)
    assert Mount(agent, AGENT_MOUNT, True) in mounts
    assert _host_path(mounts, sandbox.workdir) != agent  # the container's own scratch workspace
    assert (root, writable) == (agent, False)
    agent.mkdir()
    (agent / "notes.md").write_text("agent notes")
    tools = Workspace(root, writable=writable, aliases=(sandbox.workdir,))
    assert tools.read("notes.md") == "agent notes"
    with pytest.raises(FileToolError) as err:
        tools.write("notes.md", "changed")
    assert err.value.code == "READ_ONLY"
