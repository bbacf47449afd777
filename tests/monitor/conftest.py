"""Fixtures of the monitor's tests: its ASGI app, asked through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor
from conveyor.monitor import Monitor, metrics_app


@pytest.fixture
async def monitor(app: Conveyor) -> Monitor:
    """The app's monitor, reading the store at every scrape (no cache)."""
    return Monitor(app, cache_s=0)


@pytest.fixture
async def http(monitor: Monitor) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=metrics_app(monitor))
    async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
        yield client


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text, by name and labels, parsed back
    with ``prometheus_client``'s own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)
