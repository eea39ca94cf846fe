"""Live reload: checks run off the event loop, and no failure stops the file watcher."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path

import pytest

import clawmesh.config._holder as holder_module
from clawmesh.bus._service import _watch_config
from clawmesh.checks import default_checks
from clawmesh.config import Config, ConfigHolder, Problem
from clawmesh.config import load_config as real_load
from tests.fixtures.gateway import wait_until

ENV = {"HOME": "/nonexistent"}


def _write(path: Path, data: dict[str, object], mtime: int) -> None:
    """Write and give the file a distinct mtime (the watcher compares mtimes)."""
    path.write_text(json.dumps(data))
    os.utime(path, (mtime, mtime))


def _agents(*ids: str) -> dict[str, object]:
    return {"agents": {"list": [{"id": i} for i in ids]}}


async def test_the_loop_keeps_running_while_a_reload_checks_the_config(tmp_path: Path) -> None:
    """A check that finishes only once the loop has ticked: on the loop, it would wait forever."""
    ticked = threading.Event()
    checking = threading.Event()
    saw_ticks: list[bool] = []

    def waits_for_the_loop(config: Config) -> list[Problem]:
        if config.agent_ids == ("b",):  # only the reload, not the first load
            checking.set()
            saw_ticks.append(ticked.wait(10))
        return []

    path = tmp_path / "clawmesh.json"
    _write(path, _agents("a"), 1_000)
    holder = ConfigHolder.load(path, ENV, checks=(*default_checks(), waits_for_the_loop))

    async def ticker() -> None:
        while True:
            if checking.is_set():
                ticked.set()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        _write(path, _agents("b"), 2_000)
        result = await holder.reload_async()
    finally:
        task.cancel()
    assert saw_ticks == [True]
    assert result.ok and result.changed and holder.current.agent_ids == ("b",)


async def test_a_large_config_reloads_while_the_loop_answers(tmp_path: Path) -> None:
    path = tmp_path / "clawmesh.json"
    _write(path, _agents("a"), 1_000)
    holder = ConfigHolder.load(path, ENV, checks=default_checks())
    bindings = [
        {"agentId": "a", "match": {"channel": "discord", "peer": {"kind": "direct", "id": f"u{i}"}}}
        for i in range(3_000)
    ]
    _write(path, {**_agents("a"), "bindings": bindings}, 2_000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        reload = asyncio.create_task(holder.reload_async())
        await asyncio.sleep(0)  # the reload is now in its thread
        before = ticks
        # the ticker advanced while the reload was in flight
        await wait_until(
            lambda: ticks > before + 10 and not reload.done(), timeout=30, interval=0, message="ticks"
        )
        result = await reload
    finally:
        task.cancel()
    assert result.ok and len(holder.current.document.bindings or []) == 3_000


@pytest.mark.parametrize("how", ["raises", "not utf-8"])
async def test_the_watcher_survives_a_failed_reload_and_applies_the_next_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    path = tmp_path / "clawmesh.json"
    _write(path, _agents("a"), 1_000)
    holder = ConfigHolder.load(path, ENV, checks=default_checks())
    if how == "raises":

        def broken_once(*args: object, **kwargs: object) -> Config:
            monkeypatch.setattr(holder_module, "load_config", real_load)
            raise RuntimeError("a bug in a check")

        monkeypatch.setattr(holder_module, "load_config", broken_once)
        _write(path, _agents("b"), 2_000)
    else:
        path.write_bytes(b'{"agents": {"list": [{"id": "\xff"}]}}')
        os.utime(path, (2_000, 2_000))
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_config([holder], stop, interval=0.02))
    try:
        with caplog.at_level(logging.ERROR, "clawmesh.config"):
            await wait_until(lambda: holder.failed_reloads == 1, timeout=10, message="the failed reload")
        assert holder.current.agent_ids == ("a",)
        assert "config reload failed" in caplog.text
        if how == "not utf-8":
            assert "not UTF-8 text: byte 0xff" in caplog.text
        _write(path, _agents("c"), 3_000)
        await wait_until(lambda: holder.current.agent_ids == ("c",), timeout=10, message="the valid edit")
        assert not watcher.done()
    finally:
        stop.set()
        await watcher


async def test_a_failing_listener_is_logged_and_the_others_still_hear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "clawmesh.json"
    _write(path, _agents("a"), 1_000)
    holder = ConfigHolder.load(path, ENV, checks=default_checks())
    heard: list[tuple[str, ...]] = []

    def broken(config: Config) -> None:
        raise KeyError("oops")

    holder.on_change(broken)
    holder.on_change(lambda config: heard.append(config.agent_ids))
    _write(path, _agents("b"), 2_000)
    with caplog.at_level(logging.ERROR, "clawmesh.config"):
        result = await holder.reload_async()
    assert result.ok and heard == [("b",)] and "config listener" in caplog.text
