"""Regenerate tests/fixtures/oracle/config_writes.json from the real OpenClaw (`make oracle-fixtures`).

Runs OpenClaw 2026.9.6's config-writing commands (`agents add`, `agents bind`, `agents unbind`,
`agents set-identity`) one after the other on a hand-written, commented JSON5 `openclaw.json`
and records, per step, the command, the file OpenClaw wrote and what it said on stderr.
tests/unit/test_oracle_config_writes.py runs the same steps in clawmesh and compares the layout
(where the agent and the binding land) and the comments (OpenClaw strips them with a warning;
clawmesh keeps them). Needs OpenClaw 2026.9.6 and Node 24 from npm (docs/openclaw-oracle.md).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from _run import ORACLE_VERSION, oracle_dir, oracle_env

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "oracle" / "config_writes.json"

# the home directory is replaced by HOME in the fixture, so the test can put it anywhere
INITIAL = """\
// my config: hand-written
{
  // the agents
  agents: {
    ownership: "explicit",
    entries: {
      main: { name: "Main" }, // the default one
    },
  },
  /* routing */
  bindings: [
    { agentId: "main", match: { channel: "telegram" } }, // tg
  ],
}
"""

STEPS = [
    ["agents", "add", "work", "--workspace", "HOME/ws-work", "--non-interactive"],
    ["agents", "bind", "--agent", "work", "--bind", "discord"],
    ["agents", "set-identity", "--agent", "work", "--name", "Worker"],
    ["agents", "unbind", "--agent", "main", "--bind", "telegram"],
]


def main() -> None:
    openclaw = oracle_dir() / "node_modules" / ".bin" / "openclaw"
    with tempfile.TemporaryDirectory(prefix="openclaw-oracle-") as tmp:
        home = Path(tmp)
        config = home / "openclaw.json"
        config.write_text(INITIAL)
        env = oracle_env(home, OPENCLAW_CONFIG_PATH=str(config))
        steps = []
        for step in STEPS:
            args = [a.replace("HOME", str(home)) for a in step]
            result = subprocess.run(
                [str(openclaw), *args], env=env, capture_output=True, text=True, timeout=600, check=False
            )
            steps.append(
                {
                    "args": step,
                    "exitCode": result.returncode,
                    "stderr": result.stderr.replace(str(home), "HOME"),
                    "after": config.read_text().replace(str(home), "HOME"),
                }
            )
            print(f"openclaw {' '.join(step)}: exit {result.returncode}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"openclaw": ORACLE_VERSION, "initial": INITIAL, "steps": steps}, indent=2) + "\n"
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
