"""Publishing to a stream across a JetStream leader change.

While a stream's leader is being elected (a NATS node died or was cut off), publishes get no
answer (NoStreamResponse, a timeout) or a 503 from JetStream for a few seconds. A publish that
carries a `Nats-Msg-Id` can be sent again as it is: if an earlier try was stored after all, the
stream's duplicate window answers `duplicate` instead of storing it twice. So such publishes
are retried, with the same headers, for a bounded time (`runtime.publishRetrySeconds`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

__all__ = ["PUBLISH_RETRYABLE", "publish_retrying"]

log = logging.getLogger("clawmesh.bus")

# No stream answered (leader election, a node gone), no answer in time, JetStream said 503, or
# the connection is moving to another server: the next try may well succeed.
PUBLISH_RETRYABLE: tuple[type[BaseException], ...] = (
    NoStreamResponseError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    TimeoutError,
    ServiceUnavailableError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
)
# 409 "duplicate message id is in process": an earlier try with this id is being stored (a slow
# leader); the next try is answered `duplicate` once it is.
_IN_PROCESS_ERR_CODE = 10158


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, PUBLISH_RETRYABLE):
        return True
    return isinstance(exc, APIError) and exc.err_code == _IN_PROCESS_ERR_CODE


_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0


async def publish_retrying(
    js: JetStreamContext,
    subject: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    within: float,
    counters: MutableMapping[str, int] | None = None,
) -> PubAck:
    """Publish to a stream; while the failure is one a leader change causes, try again with the
    same headers until `within` seconds have passed, then raise the last failure. `headers`
    must carry a `Nats-Msg-Id`: only then is a second try of a stored message harmless.
    `counters`: the service's, where `publish_retries` counts the tries after a failure."""
    if "Nats-Msg-Id" not in headers:
        raise ValueError(f"publish to {subject!r} retried without a Nats-Msg-Id: it could be stored twice")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = _FIRST_PAUSE
    tries = 0
    while True:
        tries += 1
        # one try waits at most its usual time, and not much past the deadline
        timeout = min(getattr(js, "_timeout", 5.0), max(deadline - loop.time(), 0.1))
        try:
            # a copy: nats-py may add headers to the mapping it is given
            return await js.publish(subject, data, timeout=timeout, headers=dict(headers))
        except Exception as exc:
            if not _retryable(exc):
                raise
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("publish to %s failed %d times within %.1fs: %s", subject, tries, within, exc)
                raise
            log.info("publish to %s failed (%s: %s); trying again", subject, type(exc).__name__, exc)
            if counters is not None:
                counters["publish_retries"] += 1
            # a pause between tries, growing, so an election is not flooded; not a synchronisation
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_PAUSE)
