"""The composition root: the service registry, how `clawmesh up` builds the services, and the
commands that run them (`clawmesh service NAME`, `clawmesh-NAME`)."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clawmesh.checks import default_checks
from clawmesh.cli import CliError
from clawmesh.config import Config, parse_config
from clawmesh_gateway.cli import app
from clawmesh_gateway.registry import (
    SERVICES,
    Ingress,
    IngressOptions,
    NodeAgent,
    NodeAgentOptions,
    Router,
    Runner,
    in_process,
    service_class,
)

BIN = Path(sys.executable).parent


def test_registry_names_are_the_names_services_report() -> None:
    assert dict(SERVICES) == {"ingress": Ingress, "router": Router, "runner": Runner, "node-agent": NodeAgent}
    for name, cls in SERVICES.items():
        assert cls.name == name
        assert cls.__doc__, f"{cls.__name__} has no class docstring"


def test_an_unknown_service_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(
        KeyError, match="unknown service 'gateway' \\(one of ingress, router, runner, node-agent\\)"
    ):
        service_class("gateway")


def config(data: dict[str, Any]) -> Config:
    return parse_config(data, checks=default_checks())


def _options(factory: Any) -> Any:
    assert isinstance(factory, partial)
    return factory.keywords["options"]


def test_in_process_runs_everything_with_the_machine_as_node_local() -> None:
    planned = dict(in_process(config({}), port=0))
    assert list(planned) == ["ingress", "router", "runner", "node-agent"]
    assert _options(planned["ingress"]) == IngressOptions(port=0)
    assert _options(planned["node-agent"]) == NodeAgentOptions(node_id="local")
    assert planned["router"] is Router and planned["runner"] is Runner


def test_in_process_takes_the_local_node_from_the_config() -> None:
    named = dict(in_process(config({"nodes": {"local": {"id": "desk"}}}), port=None))
    assert _options(named["node-agent"]) == NodeAgentOptions(node_id="desk")
    assert _options(named["ingress"]) == IngressOptions(port=None)
    disabled = in_process(config({"nodes": {"local": {"enabled": False}}}), port=None)
    assert [name for name, _ in disabled] == ["ingress", "router", "runner"]


def test_in_process_with_names_builds_just_those() -> None:
    assert [name for name, _ in in_process(config({}), port=0, names=("node-agent", "router"))] == [
        "node-agent",
        "router",
    ]
    with pytest.raises(KeyError, match="unknown service 'nope'"):
        in_process(config({}), port=0, names=("nope",))


def test_a_service_that_cannot_be_imported_stops_up_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a runner whose import fails (once a silent skip: the gateway queued turns forever)
    monkeypatch.setitem(sys.modules, "clawmesh_runner", None)
    monkeypatch.delitem(sys.modules, "clawmesh_gateway.registry")
    monkeypatch.setenv("CLAWMESH_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "none.json"), "up"])
    assert isinstance(result.exception, CliError), result.output
    assert "cannot load the gateway's services" in str(result.exception)
    assert "clawmesh_runner" in str(result.exception)


def test_service_commands_take_only_their_own_options() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["service", "--help"])
    assert listed.exit_code == 0
    for name in SERVICES:
        assert name in listed.output
    refused = runner.invoke(app, ["service", "router", "--port", "9"])
    assert refused.exit_code == 2 and "No such option: --port" in refused.output
    unknown = runner.invoke(app, ["service", "node_agent"])
    assert unknown.exit_code == 2 and "No such command" in unknown.output


def test_a_label_without_a_value_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["service", "node-agent", "--label", "region"])
    assert isinstance(result.exception, CliError) and result.exception.code == 2
    assert "--label expects key=value (got 'region')" in str(result.exception)


@pytest.mark.parametrize(
    ("script", "own", "foreign"),
    [
        ("clawmesh-ingress", "--port", "--node-id"),
        ("clawmesh-router", "--nats-url", "--port"),
        ("clawmesh-runner", "--config", "--label"),
        ("clawmesh-node-agent", "--node-id", "--port"),
    ],
)
def test_console_scripts_are_the_service_commands(script: str, own: str, foreign: str) -> None:
    res = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"Usage: {script} [OPTIONS]")
    assert own in res.stdout and foreign not in res.stdout


def test_version_answers_before_any_command_module_is_imported() -> None:
    """`clawmesh --version` is a line scripts ask for often: it must not pay for typer, rich and
    every command module (~0.4 s), so it answers before importing them."""
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['clawmesh', '--version']\n"
        "from clawmesh_gateway.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('clawmesh.cli', 'typer', 'rich')))\n"
        "print('heavy:', heavy)\n"
    )
    from clawmesh import __version__

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == [f"clawmesh {__version__}", "heavy: []"], proc.stdout + proc.stderr
