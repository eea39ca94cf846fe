"""`python -m tests.chaos.trace` refuses bad arguments with a line saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.trace import main


def test_a_directory_without_a_kept_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "u3-m61"])
    assert exc.value.code == 2
    assert "no nats*.conf here" in capsys.readouterr().err


def test_a_message_id_not_shaped_like_the_reports_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nats1.conf").write_text('listen: "127.0.0.1:4222"\n')
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "u3-m61", "turn-7"])
    assert exc.value.code == 2
    assert "not turn-7" in capsys.readouterr().err
