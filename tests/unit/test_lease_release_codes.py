"""Releasing a lease whose revision moved on: JetStream answers "wrong last sequence" with one of
two error codes (10071, or 10164 from newer servers, which a clustered chaos run got); both must
lead to the holder check, not to a failed release that leaves the key until its TTL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.errors import BadRequestError

from clawmesh.bus import Leases


class _Js:
    def __init__(self, err_code: int) -> None:
        self.err_code = err_code
        self.calls: list[dict[str, str]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        self.calls.append(headers)
        if len(self.calls) == 1:
            raise BadRequestError(code=400, err_code=self.err_code, description="wrong last sequence")
        return SimpleNamespace(seq=99)


class _Kv:
    def __init__(self, owner: bytes, revision: int) -> None:
        self.entry = SimpleNamespace(value=owner, revision=revision)

    async def get(self, key: str) -> Any:
        return self.entry


@pytest.mark.parametrize("err_code", [10071, 10164])
async def test_a_release_with_a_stale_revision_checks_the_holder_for_either_code(err_code: int) -> None:
    js = _Js(err_code)
    leases = Leases(js, _Kv(b"me", revision=7), "cm_leases", "me")  # type: ignore[arg-type]
    await leases._delete("s.x", revision=5)
    # still ours at revision 7: deleted with that revision
    assert [c["Nats-Expected-Last-Subject-Sequence"] for c in js.calls] == ["5", "7"]


@pytest.mark.parametrize("err_code", [10071, 10164])
async def test_a_release_leaves_someone_elses_lease_alone_for_either_code(err_code: int) -> None:
    js = _Js(err_code)
    leases = Leases(js, _Kv(b"other", revision=8), "cm_leases", "me")  # type: ignore[arg-type]
    await leases._delete("s.x", revision=5)
    assert len(js.calls) == 1


async def test_other_errors_still_fail_the_release() -> None:
    js = _Js(10059)
    leases = Leases(js, _Kv(b"me", revision=7), "cm_leases", "me")  # type: ignore[arg-type]
    with pytest.raises(BadRequestError):
        await leases._delete("s.x", revision=5)
