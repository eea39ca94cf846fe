"""Without a roster any agent id is an agent: what is kept per id must be bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.config._model import DERIVED_LIMIT
from clawmesh.tools.policy import effective_tools


def test_values_derived_per_agent_id_are_bounded_and_hot_ones_stay() -> None:
    config = parse_config({"agents": {"defaults": {"model": "echo/x"}}}, env={}, checks=default_checks())
    builds: Counter[str] = Counter()

    def build(name: str) -> Callable[[Config], object]:
        def make(_: Config) -> object:
            builds[name] += 1
            return object()

        return make

    hot = config.derived("hot", build("hot"))
    cold = config.derived("cold", build("cold"))
    for i in range(2 * DERIVED_LIMIT):
        view = config.agent_view(f"stranger-{i}")
        assert view is not None and view.id == f"stranger-{i}"
        effective_tools(config, view.id)
        if i % 64 == 0:  # in use all along
            assert config.derived("hot", build("hot")) is hot
    assert config.derived("hot", build("hot")) is hot and builds["hot"] == 1
    assert config.derived("cold", build("cold")) is not cold and builds["cold"] == 2
    again = config.agent_view("stranger-0")  # evicted long ago: built again, the same
    assert again is not None and again.id == "stranger-0" and again.workspace.name == "workspace-stranger-0"


def test_auth_profiles_kept_per_agent_dir_are_bounded() -> None:
    from clawmesh_runner.turn import _AUTH_LIMIT, _auth_for

    config = parse_config({}, env={}, checks=default_checks())
    views = [config.agent_view(f"a{i}") for i in range(_AUTH_LIMIT + 2)]
    assert all(v is not None for v in views)
    hot, cold = _auth_for(views[0]), _auth_for(views[1])  # type: ignore[arg-type]
    for view in views[2:]:
        _auth_for(view)  # type: ignore[arg-type]
        assert _auth_for(views[0]) is hot  # type: ignore[arg-type]
    assert _auth_for(views[1]) is not cold  # type: ignore[arg-type]
