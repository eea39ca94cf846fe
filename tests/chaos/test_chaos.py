"""The short chaos run (issue 18) in the normal suite: a real 3-node NATS cluster and the services
as processes on loopback, steady load, a seeded fault schedule, then what users received.

`make chaos` is the long form. The seed is fixed here (CHAOS_SEED overrides it) so the schedule
is the same in every CI run; it is printed with the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import Options, run_chaos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def test_users_get_every_reply_once_in_order_under_chaos(tmp_path: Path) -> None:
    opts = Options(
        seed=int(os.environ.get("CHAOS_SEED") or 18),
        duration=float(os.environ.get("CHAOS_DURATION") or 50),
        warmup=15,
        sessions=4,
        think=0.5,
        retry_window=30,
        mean_gap=4,
        max_down=5,
        work=tmp_path / "cluster",
    )
    result = await run_chaos(opts)
    print(result.text())
    report = result.report
    assert result.faults, "the schedule has no fault"
    assert report.accepted > 0 and report.latency_chaos, "no message went through during the chaos phase"
    assert not report.lost, f"accepted but never answered (seed {opts.seed}): {report.lost}"
    assert not report.duplicated, f"answered more than once (seed {opts.seed}): {report.duplicated}"
    assert not report.wrong_text, f"wrong replies (seed {opts.seed}): {report.wrong_text}"
    assert not report.refused, f"refused beyond the retry window (seed {opts.seed}): {report.refused}"
    assert not report.rejected, f"4xx answers (seed {opts.seed}): {report.rejected}"
    assert not (report.transcript_missing or report.transcript_duplicated), (
        f"transcripts (seed {opts.seed}): {report.details()}"
    )
    misordered = set(report.misordered_sessions) | set(report.transcript_misordered)
    assert not misordered, (
        f"out of order (seed {opts.seed}): replies {report.misordered_sessions}, transcripts "
        f"{report.transcript_misordered}; turns numbered out of order: {report.numbering_inversions()}"
    )
