"""The fault schedule: drawn up front from a seed, so a run can be repeated exactly.

Faults (each on one process, chosen at random):
- `kill`: SIGKILL a service (router, runner, ingress replica, node-agent); restarted after
  `duration` seconds, as compose's `restart: unless-stopped` would;
- `pause`: SIGSTOP a service for `duration` seconds, then SIGCONT (a stalled process: GC pause,
  overloaded host, frozen VM);
- `nats-kill`: SIGKILL a nats-server, restarted after `duration` seconds on the same ports and
  data directory;
- `nats-partition`: SIGSTOP a nats-server for `duration` seconds. On loopback without Docker this
  stands in for a network partition: its peers and its clients get no answer from it, its RAFT
  groups elect leaders elsewhere, and when it comes back it catches up from the others.

At most one nats-server is faulty at a time (3 replicas survive the loss of one, not of two),
and one process has at most one fault at a time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .cluster import Proc

__all__ = ["Fault", "FaultLog", "apply_schedule", "heal", "schedule", "supervise"]

_SERVICE_KINDS = ("ingress", "router", "runner", "node-agent")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the chaos phase starts
    action: str  # kill | pause | nats-kill | nats-partition
    target: str  # process name
    duration: float  # seconds until restart / resume

    def __str__(self) -> str:
        return f"t+{self.at:6.1f}s {self.action:<14} {self.target:<12} for {self.duration:4.1f}s"


def schedule(
    seed: int,
    duration: float,
    targets: Sequence[tuple[str, str]],
    *,
    mean_gap: float = 4.0,
    max_down: float = 6.0,
) -> list[Fault]:
    """Faults over `duration` seconds on `targets` ((name, kind) pairs): on average one every
    `mean_gap` seconds, each lasting up to `max_down` (a nats partition up to 1.5 × that)."""
    rng = random.Random(seed)
    services = [name for name, kind in targets if kind in _SERVICE_KINDS]
    servers = [name for name, kind in targets if kind == "nats"]
    busy_until: dict[str, float] = {}
    nats_busy_until = 0.0
    faults: list[Fault] = []
    t = rng.uniform(0.5, mean_gap)
    while t < duration:
        t = round(t, 2)  # printed with 2 decimals: the schedule is exactly what is printed
        nats_fault = bool(servers) and rng.random() < 0.3
        if nats_fault and t >= nats_busy_until:
            target = rng.choice(servers)
            action = rng.choice(("nats-kill", "nats-partition"))
            down = round(rng.uniform(1.0, max_down * (1.5 if action == "nats-partition" else 1.0)), 2)
            # after a restart the server needs a moment to rejoin before the next one may go
            nats_busy_until = t + down + 5.0
        else:
            free = [s for s in services if busy_until.get(s, 0.0) <= t]
            if not free:
                t += rng.expovariate(1 / mean_gap)
                continue
            target = rng.choice(free)
            action = rng.choice(("kill", "pause"))
            down = round(rng.uniform(0.5, max_down), 2)
        busy_until[target] = t + down
        faults.append(Fault(t, action, target, down))
        t += rng.expovariate(1 / mean_gap)
    return faults


@dataclass
class FaultLog:
    """What was done and when (wall clock, like the load's records), for the report."""

    lines: list[str]

    def add(self, text: str) -> None:
        self.lines.append(f"{time.time():.1f} {text}")


async def apply_schedule(
    faults: Sequence[Fault],
    procs: Sequence[Proc],
    log: FaultLog,
    on_restart: Callable[[Proc], None] | None = None,
) -> None:
    """Carry `faults` out. The sleeps here are the schedule itself (the test's input), not
    synchronisation. Cancelling this leaves processes as they are; `heal` resumes them."""
    by_name = {p.name: p for p in procs}
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Task[None]] = set()

    async def one(fault: Fault) -> None:
        proc = by_name[fault.target]
        if fault.action in ("kill", "nats-kill"):
            proc.held = True  # the supervisor leaves it dead for the fault's duration
            proc.kill()
            log.add(f"kill -9 {proc.name}")
            try:
                await asyncio.sleep(fault.duration)
            finally:
                proc.restart()
                proc.held = False
            log.add(f"restart {proc.name}")
            if on_restart:
                on_restart(proc)
        else:
            proc.pause()
            log.add(f"SIGSTOP {proc.name}")
            await asyncio.sleep(fault.duration)
            proc.resume()
            log.add(f"SIGCONT {proc.name}")

    try:
        for fault in faults:
            delay = start + fault.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(fault))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()


def heal(procs: Sequence[Proc], log: FaultLog) -> None:
    """End of chaos: every stopped process resumes and every dead one starts again."""
    for p in procs:
        if p.stopped:
            p.resume()
            log.add(f"heal: SIGCONT {p.name}")
        elif not p.alive:
            p.restart()
            log.add(f"heal: restart {p.name}")


async def supervise(procs: Sequence[Proc], log: FaultLog, interval: float = 1.0) -> None:
    """Compose's `restart: unless-stopped`: a process that exited by itself (a service gives up
    when its NATS connection is closed for good) is started again. Runs until cancelled."""
    while True:
        for p in procs:
            if not p.held and not p.stopped and p.popen is not None and not p.alive:
                log.add(f"supervisor: {p.name} exited ({p.popen.returncode}); restart")
                p.restart()
        await asyncio.sleep(interval)
