"""Shared fixtures. Integration fixtures (real nats-server on port 0, …) live in tests/fixtures."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.nats import nats_server, nats_url, nc  # noqa: F401  (shared fixtures)


def _docker_unavailable_reason() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if os.environ.get("CLAWMESH_SKIP_DOCKER") == "1":
        return "CLAWMESH_SKIP_DOCKER=1"
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means: no usable engine
        return f"no Docker engine reachable ({type(exc).__name__}: {exc})"
    return None


_DOCKER_REASON: str | None = None
_DOCKER_CHECKED = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.docker` tests skip with a reason locally, but fail under CI=true."""
    global _DOCKER_CHECKED, _DOCKER_REASON
    if item.get_closest_marker("docker") is None:
        return
    if not _DOCKER_CHECKED:
        _DOCKER_REASON = _docker_unavailable_reason()
        _DOCKER_CHECKED = True
    if _DOCKER_REASON is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"docker test cannot run in CI: {_DOCKER_REASON} (CI must install and start dockerd)")
    pytest.skip(f"docker: {_DOCKER_REASON}")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real ~/.clawmesh."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var in (
        "CLAWMESH_STATE_DIR",
        "CLAWMESH_CONFIG_PATH",
        "CLAWMESH_PROFILE",
        "CLAWMESH_HOME",
        # clawmesh honours OpenClaw's variables when its own are unset
        "OPENCLAW_STATE_DIR",
        "OPENCLAW_CONFIG_PATH",
        "OPENCLAW_HOME",
        "OPENCLAW_PROFILE",
        "OPENCLAW_WORKSPACE_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
