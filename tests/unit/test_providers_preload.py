"""Runners import the provider modules their model chains need at start, not inside the first turn."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _preload_in_fresh_interpreter(config: str) -> str:
    # A fresh interpreter: this test process may have imported the SDKs already.
    code = textwrap.dedent(
        f"""
        import sys
        from clawmesh.checks import default_checks
        from clawmesh.config import parse_config_text
        from clawmesh.providers import preload_sdks
        config = parse_config_text({config!r}, env={{}}, checks=default_checks())
        openai, anthropic = "clawmesh.providers._openai", "clawmesh.providers._anthropic"
        assert openai not in sys.modules and anthropic not in sys.modules
        apis = preload_sdks(config)
        print(",".join(apis), openai in sys.modules, anthropic in sys.modules)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_an_openai_chain_imports_the_openai_provider_only() -> None:
    config = '{"agents": {"defaults": {"model": {"primary": "openai/gpt-x", "fallbacks": ["echo/x"]}}}}'
    assert _preload_in_fresh_interpreter(config) == "openai True False"


def test_both_apis_are_imported_when_the_chains_use_both() -> None:
    config = (
        '{"agents": {"defaults": {"model": "anthropic/claude-x"},'
        ' "list": [{"id": "a", "default": true}, {"id": "b", "model": "openai/gpt-x"}]}}'
    )
    assert _preload_in_fresh_interpreter(config) == "anthropic,openai True True"


def test_echo_only_imports_no_provider_module() -> None:
    assert _preload_in_fresh_interpreter('{"agents": {"defaults": {"model": "echo/demo"}}}') == "False False"
