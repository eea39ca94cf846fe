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
    # the replies of such a session follow the router's numbering exactly
    follow_numbering = all(
        report.misordered_sessions[peer]
        == [n for n, _ in report.sequenced_out_of_order[peer] if n in set(report.misordered_sessions[peer])]
        for peer in report.misordered_sessions
        if peer in report.sequenced_out_of_order
    )
    if misordered and misordered <= set(report.sequenced_out_of_order) and follow_numbering:
        # Known, not fixed in main yet: when the router cannot store routed turns (a CM_TURNS
        # publish times out, or is refused with 409 "duplicate message id is in process",
        # err_code 10158, during a NATS fault) it hands the messages back, routes the session's
        # later messages meanwhile and numbers the handed-back one after them ("message N of …
        # arrived after a newer one" in its log). Replies follow the numbering, so they and the
        # transcript are out of user order. Only this case is tolerated; misordered replies of
        # turns numbered in order fail below.
        pytest.xfail(
            f"issue 18: the router numbered turns out of user order after a failed CM_TURNS publish "
            f"(seed {opts.seed}): {report.numbering_inversions()}"
        )
    assert not misordered, (
        f"out of order (seed {opts.seed}): replies {report.misordered_sessions}, transcripts "
        f"{report.transcript_misordered}; turns numbered out of order: {report.numbering_inversions()}"
    )
