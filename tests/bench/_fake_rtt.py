"""The bare HTTP round trip to the fake model server: the baseline for a provider's cost.

One keep-alive `httpx.AsyncClient` posts the body a provider would send for one user message
and reads the streamed answer as bytes, without parsing it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.bench._common import median, percentile

__all__ = ["Api", "fake_round_trip", "raw_model_call"]

Api = str  # "openai" | "anthropic"


def raw_model_call(client: httpx.AsyncClient, api: Api) -> Callable[[], Awaitable[None]]:
    """One streamed model call to the fake at the client's base URL, body read and dropped."""
    if api == "openai":
        path, headers = "/v1/chat/completions", {"authorization": "Bearer bench-key"}
        body: dict[str, Any] = {
            "model": "fake",
            "messages": [
                {"role": "system", "content": "You are a bench."},
                {"role": "user", "content": "ping 0"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 256,
        }
    elif api == "anthropic":
        path = "/v1/messages"
        headers = {"authorization": "Bearer bench-key", "anthropic-version": "2023-06-01"}
        body = {
            "model": "fake",
            "max_tokens": 256,
            "system": "You are a bench.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ping 0"}]}],
            "stream": True,
        }
    else:
        raise ValueError(f"unknown api {api!r} (openai | anthropic)")

    async def call() -> None:
        async with client.stream("POST", path, json=body, headers=headers) as resp:
            async for _ in resp.aiter_bytes():
                pass
            if resp.status_code != 200:
                raise RuntimeError(f"raw {api} call to the fake model: HTTP {resp.status_code}")

    return call


async def fake_round_trip(port: int, api: Api, n: int) -> dict[str, float]:
    """p50 latency and CPU (this process) per bare round trip to the fake model on `port`."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as client:
        call = raw_model_call(client, api)
        for _ in range(min(20, n)):
            await call()
        lat: list[float] = []
        cpu0 = time.process_time()
        for _ in range(n):
            t0 = time.perf_counter()
            await call()
            lat.append((time.perf_counter() - t0) * 1e3)
        cpu_ms = (time.process_time() - cpu0) * 1e3 / n
    lat.sort()
    return {
        "fake_rtt_p50_ms": percentile(lat, 50),
        "fake_rtt_cpu_ms": cpu_ms,
        "fake_rtt_mean_ms": median(lat),
    }
