"""The load generator: N concurrent clients posting one image to the predict route for a while (httpx + asyncio).

Each client sends its next request as soon as the previous answer arrived (closed loop), so N is the number of
requests in flight. Every answer is counted by status; a transport error or a timeout is an error too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx
from pydantic import BaseModel

from bench.common import Server, percentiles


class LoadResult(BaseModel):
    """What N clients saw in `seconds`: throughput, latency of the 200s, answers by status, errors."""

    clients: int
    seconds: float
    requests: int
    ok: int
    throughput_rps: float
    latency: dict[str, float | None]
    statuses: dict[str, int]
    errors: int
    shed_503: int
    latencies_ms: list[float]

    def summary(self) -> dict[str, object]:
        """The figures without the raw latency list (for a JSON line)."""
        return self.model_dump(exclude={"latencies_ms"})


async def _client(
    client: httpx.AsyncClient,
    path: str,
    image: bytes,
    stop_at: float,
    times: list[float],
    statuses: Counter[str],
    after_each: Callable[[], object] | None,
) -> None:
    files = {"file": ("image.jpg", image, "image/jpeg")}
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            response = await client.post(path, files=files)
        except httpx.HTTPError as err:
            statuses[type(err).__name__] += 1
            continue
        statuses[str(response.status_code)] += 1
        if response.status_code == 200:
            times.append((time.perf_counter() - start) * 1000)
        if after_each is not None:
            after_each()
        elif response.status_code == 503:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def _run(
    server: Server,
    path: str,
    image: bytes,
    clients: int,
    seconds: float,
    timeout: float,
    after_each: Callable[[], object] | None,
) -> LoadResult:
    times: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.url, timeout=timeout, limits=limits, transport=server.transport
    ) as client:
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(
            *(_client(client, path, image, stop_at, times, statuses, after_each) for _ in range(clients))
        )
        elapsed = time.perf_counter() - start
    requests = sum(statuses.values())
    return LoadResult(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=requests,
        ok=statuses["200"],
        throughput_rps=round(statuses["200"] / elapsed, 2),
        latency=percentiles(times),
        statuses=dict(statuses),
        errors=requests - statuses["200"] - statuses["503"],
        shed_503=statuses["503"],
        latencies_ms=times,
    )


def run_load(
    server: Server,
    model_id: str,
    image: bytes,
    clients: int,
    seconds: float,
    timeout: float = 60,
    after_each: Callable[[], object] | None = None,
    runtime: str | None = None,
) -> LoadResult:
    """Post `image` to the model's predict route from `clients` concurrent clients for `seconds`; `after_each`
    (blocking, so meant for one client) runs after every answer, e.g. a raw call paired with each request;
    `runtime` picks the exported format that serves (default: the model's)."""
    path = f"/v1/models/{model_id}/predict" + (f"?runtime={runtime}" if runtime else "")
    return asyncio.run(_run(server, path, image, clients, seconds, timeout, after_each))
