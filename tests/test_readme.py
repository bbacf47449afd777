"""The README's examples run: each Python block after the quick start (which
makes an app of its own) is executed against a SQLite store, with the tasks
it names defined first, and what it claims to do is checked."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor, JobState, Limits, Rate, Retention
from conveyor.backends.values import QueueSlots

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)[1:]


def _names(app: Conveyor) -> dict[str, Any]:
    """The tasks and values the README's examples use."""

    @app.task(queue="pdf")
    async def render_pdf(doc: str) -> str:
        return doc

    @app.task
    async def resize(path: str) -> None: ...

    @app.task
    async def assemble(doc: str) -> None: ...

    @app.task
    async def render(doc: str, page: int) -> None: ...

    @app.task
    async def summarize(doc: str) -> None: ...

    @app.task
    async def extract(doc: str) -> None: ...

    @app.task
    async def fetch(url: str) -> str:
        return url

    @app.task
    async def parse(page: str, strict: bool) -> str:
        return page

    @app.task
    async def store(parsed: str) -> None: ...

    @app.task
    async def notify(user: str) -> None: ...

    @app.task
    async def send_digest(kind: str) -> None: ...

    @app.task
    async def cleanup() -> None: ...

    names = dict(locals())
    names.update(
        app=app, doc="doc-1", url="https://example.org", user="ann", paths=["a.png", "b.png"]
    )
    return names


async def _run(block: str, names: dict[str, Any]) -> None:
    code = compile(block, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, names)  # a block with top-level await gives a coroutine
    if result is not None:
        await result


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(BLOCKS) == 7
    assert "set_limits" in BLOCKS[1] and "add_flow" in BLOCKS[2] and "cron" in BLOCKS[3]
    assert "app.events" in BLOCKS[4] and "app.stats" in BLOCKS[5]
    assert "metrics_app" in BLOCKS[6]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_a_readme_example_runs(sqlite_url: str, index: int) -> None:
    async with Conveyor(sqlite_url) as app:
        if index == 4:  # events: the loop ends at the first completion it sees
            await _subscribed(app, _run(BLOCKS[index], _names(app)))
            return
        if index == 5:  # statistics: of a pdf job that completed
            names = _names(app)
            await _complete_a_pdf_job(app)
            await _run(BLOCKS[index], names)
            assert (await app.totals())["pdf"].completed == 1
            return
        if index == 6:  # metrics: an ASGI app that serves them, here mounted under /ops
            names = _names(app)
            await _run(BLOCKS[index], names)
            await _complete_a_pdf_job(app)
            transport = httpx.ASGITransport(app=names["asgi"], root_path="/ops")
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                text = (await http.get("/ops/metrics")).text
            assert 'conveyor_queue_processed_total{outcome="completed",queue="pdf"} 1.0' in text
            return
        await _run(BLOCKS[index], _names(app))
        counts = {q.name: q.counts for q in await app.queues()}
        if index == 0:  # enqueueing
            assert (await app.get_job("r-42")).priority == 10
            assert counts["default"][JobState.WAITING] == 2
        elif index == 1:  # limits and groups
            assert await app.limits("pdf") == {
                None: Limits(max_active=3),
                "*": Limits(max_active=1, rate=Rate(10, 1000)),
                "acme": Limits(max_active=4),
            }
            assert (await app.list_jobs("waiting", queue="pdf"))[0].group == "acme"
        elif index == 2:  # flows: every parent waits for its children
            assert counts["default"][JobState.WAITING_CHILDREN] == 2 + 2 + 1  # flow, chain, batch
        else:  # schedules
            listed = {info.schedule.id for info in await app.schedules.list()}
            assert listed == {"digest", "cleanup"}


async def _subscribed(app: Conveyor, subscriber: Coroutine[Any, Any, None]) -> None:
    """Run ``subscriber`` while a pdf job completes: it must end, having seen it."""
    listening = asyncio.create_task(subscriber)
    await asyncio.sleep(0)  # it subscribes (from now) before the job is added
    while not listening.done():
        await _complete_a_pdf_job(app)
        await asyncio.wait([listening], timeout=1)
    await listening


async def _complete_a_pdf_job(app: Conveyor) -> None:
    handle = await app.tasks["render_pdf"].enqueue("doc")
    (claimed,) = await app.backend.claim(
        slots=[QueueSlots(("pdf",), 1)], worker_id="w", lease_ms=30_000
    )
    await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b'"doc"', retention=Retention()
    )


def test_the_layout_section_names_every_module() -> None:
    """A module or folder added without a word in the README's layout fails here."""
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = Path(__file__).resolve().parents[1] / "src" / "conveyor"
    modules = {p.name for p in package.rglob("*.py")} - {"__init__.py", "__main__.py"}
    folders = {f"{p.parent.name}/" for p in package.rglob("__init__.py") if p.parent != package}
    missing = sorted(name for name in modules | folders if f"`{name}`" not in layout)
    assert missing == []
