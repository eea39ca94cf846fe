"""Which remote session a proxy turn continues: the latest one of the same runner at the same
target (bot, server, directory), found in the session's context."""

from __future__ import annotations

from pathlib import Path

from clawmesh.config import CozeSettings, OpenCodeSettings
from clawmesh.sessions import TxAssistant, TxUser
from clawmesh_runner.proxy import backend_target, remote_session


def _coze(bot: str) -> CozeSettings:
    return CozeSettings(
        region="cn", base_url="https://api.coze.cn", bot_id=bot, api_key="k", api_key_path="$"
    )


def test_the_latest_remote_session_of_the_same_target_is_continued() -> None:
    target = backend_target(_coze("b1"))
    history = [
        TxUser(turn_id="1", seq=1, text="a"),
        TxAssistant(
            turn_id="1", seq=1, text="x", backend={"runner": "coze", "target": target, "session": "c-old"}
        ),
        TxUser(turn_id="2", seq=2, text="b"),
        TxAssistant(
            turn_id="2", seq=2, text="y", backend={"runner": "coze", "target": target, "session": "c-new"}
        ),
        TxUser(turn_id="3", seq=3, text="c"),
        TxAssistant(turn_id="3", seq=3, text="from a fallback model"),  # a local turn in between
    ]
    assert remote_session(history, "coze", target) == "c-new"
    # another bot, another runner type, nothing yet: a new remote session
    assert remote_session(history, "coze", backend_target(_coze("b2"))) is None
    assert remote_session(history, "openclawx", target) is None
    assert remote_session([], "coze", target) is None


def test_targets_differ_by_server_and_directory() -> None:
    def oc(url: str, wd: str) -> OpenCodeSettings:
        return OpenCodeSettings("remote", url, 4096, None, "$", Path(wd), None, "opencode")

    assert backend_target(oc("http://a:4096", "/p")) != backend_target(oc("http://b:4096", "/p"))
    assert backend_target(oc("http://a:4096", "/p")) != backend_target(oc("http://a:4096", "/q"))
