"""A clawmesh cluster on loopback made of real processes, each of which can be killed (-9),
stopped (SIGSTOP) and resumed, or restarted, like a container under compose.

Three nats-servers form one JetStream cluster (streams and KV buckets with 3 replicas), each
service connects as its own NATS user (`natsauth`), and every process keeps its ports across
restarts so the others (and the users) find it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clawmesh.bus import find_nats_server
from clawmesh.natsauth import NatsUser, nats_users, render_auth_conf, service_user
from tests.fixtures.ports import free_ports

__all__ = ["Cluster", "Proc"]

ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child is killed when the harness dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Proc:
    """One supervised process: `argv` is started again by `restart` after a kill."""

    name: str
    kind: str  # nats | ingress | router | runner | node-agent
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    held: bool = False  # killed by a fault, to be restarted by it
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                cwd=str(ROOT),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                start_new_session=True,  # Ctrl-C of the harness reaches the harness only
            )
        self.stopped = False

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL (`docker kill`): no drain, no goodbye."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)
        self.stopped = False

    def pause(self) -> None:
        if self.alive and not self.stopped:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.popen is not None and self.stopped:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGCONT)
        self.stopped = False

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def terminate(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        self.resume()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def _nats_conf(name: str, port: int, cluster_port: int, routes: Sequence[int], store: Path, auth: str) -> str:
    route_urls = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in routes)
    return (
        f'server_name: "{name}"\n'
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{store}" }}\n'
        "cluster {\n"
        '  name: "chaos"\n'
        f'  listen: "127.0.0.1:{cluster_port}"\n'
        f"  routes: [\n{route_urls}\n  ]\n"
        "}\n"
        f"{auth}\n"
    )


@dataclass
class Cluster:
    """Three nats-servers and the services, in `work` (configs, data, one log per process)."""

    work: Path
    ingress: int = 2
    routers: int = 2
    runners: int = 3
    node_agents: int = 1
    turn_lease_seconds: float = 5
    router_partitions: int = 1  # > 1: the routers share CM_INBOUND's partitions
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    procs: list[Proc] = field(default_factory=list)
    nats_ports: list[int] = field(default_factory=list)
    ingress_ports: list[int] = field(default_factory=list)
    users: list[NatsUser] = field(default_factory=list)

    @property
    def nats_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.nats_ports]

    @property
    def ingress_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ingress_ports]

    def admin(self) -> NatsUser:
        return next(u for u in self.users if u.name == "admin")

    def of(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind]

    def config(self) -> dict[str, Any]:
        return {
            "agents": {"defaults": {"model": "echo/chaos"}, "list": [{"id": "main", "default": True}]},
            "session": {"dmScope": "per-peer"},
            "gateway": {"auth": {"token": self.token}},
            # a killed runner's turn is taken over after this; short, so the test sees it
            "runtime": {
                "turnLeaseSeconds": self.turn_lease_seconds,
                "routerPartitions": self.router_partitions,
            },
        }

    def build(self) -> None:
        """Write every config and define every process (nothing runs yet)."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.users = nats_users(nodes=["local"])
        ports = free_ports(6 + self.ingress)
        self.nats_ports, cluster_ports = ports[:3], ports[3:6]
        self.ingress_ports = ports[6:]
        auth = render_auth_conf(self.users)
        binary = find_nats_server()
        for i in range(3):
            conf = self.work / f"nats{i + 1}.conf"
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds passwords
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(
                    _nats_conf(
                        f"nats{i + 1}",
                        self.nats_ports[i],
                        cluster_ports[i],
                        cluster_ports,
                        self.work / f"nats{i + 1}-data",
                        auth,
                    )
                )
            self.procs.append(
                Proc(
                    f"nats{i + 1}",
                    "nats",
                    [binary, "-c", str(conf)],
                    dict(os.environ),
                    self._log(f"nats{i + 1}"),
                )
            )
        config_path = self.work / "clawmesh.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        state = self.work / "state"
        state.mkdir(exist_ok=True)
        base_env = {
            **os.environ,
            "HOME": str(self.work),
            "CLAWMESH_STATE_DIR": str(state),
            "CLAWMESH_NATS_REPLICAS": "3",
        }
        urls = ",".join(self.nats_urls)
        plan = [
            *(("ingress", i) for i in range(self.ingress)),
            *(("router", i) for i in range(self.routers)),
            *(("runner", i) for i in range(self.runners)),
            *(("node-agent", i) for i in range(self.node_agents)),
        ]
        for kind, i in plan:
            user = service_user(self.users, kind, node_id="local")
            env = {**base_env, "CLAWMESH_NATS_USER": user.user, "CLAWMESH_NATS_PASSWORD": user.password}
            argv = [
                sys.executable,
                "-m",
                "clawmesh_gateway",
                "service",
                kind,
                "--config",
                str(config_path),
                "--nats-url",
                urls,
                "--log-level",
                "INFO",
            ]
            if kind == "ingress":
                argv += ["--port", str(self.ingress_ports[i])]
            if kind == "node-agent":
                argv += ["--node-id", "local"]
            self.procs.append(Proc(f"{kind}{i + 1}", kind, argv, env, self._log(f"{kind}{i + 1}")))

    def _log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def stop_all(self) -> None:
        """Services first (they drain), then the nats-servers."""
        for p in reversed(self.procs):
            if p.kind != "nats":
                p.resume()
        for p in reversed(self.procs):
            p.terminate()
