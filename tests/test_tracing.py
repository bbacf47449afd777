"""OpenTelemetry tracing (conveyor.tracing): one trace from the span that
enqueued a job, through its create span, to each attempt's process span and
the spans the job makes; nothing carried when no SDK is installed. Spans are
recorded by the real SDK into memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Backoff, Conveyor
from conveyor.tracing import Tracing

from .conftest import StartWorker, eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_runs_from_the_enqueue_to_the_jobs_own_spans(
    app: Conveyor,
    start_worker: StartWorker,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    app.use(Tracing(provider))
    tracer = provider.get_tracer("test")

    @app.task(queue="pdf")
    async def render(doc: str) -> str:
        with tracer.start_as_current_span("render inside"):
            return doc

    @app.task(queue="pdf")
    def render_sync(doc: str) -> str:  # runs on a thread: the span is current there too
        with tracer.start_as_current_span("sync inside"):
            return doc

    with tracer.start_as_current_span("request"):
        handle = await render.enqueue("a")
        sync_handle = await render_sync.enqueue("b")
    await start_worker(queues=("pdf",))
    assert (await handle.wait(10)).result == "a"
    assert (await sync_handle.wait(10)).result == "b"
    await eventually(lambda: _ended(exporter, "process pdf", 2))

    (request,) = _named(exporter, "request")
    creates = _named(exporter, "create pdf")
    processes = {s.attributes["messaging.message.id"]: s for s in _named(exporter, "process pdf")}
    (inside,) = _named(exporter, "render inside")
    (sync_inside,) = _named(exporter, "sync inside")
    assert len(creates) == 2
    trace_id = request.context.trace_id
    every = [*creates, *processes.values(), inside, sync_inside]
    assert {s.context.trace_id for s in every} == {trace_id}
    for create, job_id, child in (
        (creates[0], handle.id, inside),
        (creates[1], sync_handle.id, sync_inside),
    ):
        assert create.kind is SpanKind.PRODUCER
        assert _parent_of(create) == request.context.span_id
        assert create.attributes["messaging.message.id"] == job_id
        process = processes[job_id]
        assert process.kind is SpanKind.CONSUMER
        assert _parent_of(process) == create.context.span_id
        assert _parent_of(child) == process.context.span_id
        assert process.attributes["messaging.system"] == "conveyor"
        assert process.attributes["messaging.destination.name"] == "pdf"
        assert process.attributes["conveyor.attempt"] == 1
        assert process.attributes["conveyor.outcome"] == "completed"
        assert process.status.status_code is StatusCode.UNSET
    # the traceparent is the job's own, stored with it
    stored = (await app.get_job(handle.id)).options.headers
    assert stored["traceparent"].split("-")[1] == f"{trace_id:032x}"


async def test_each_attempt_is_a_span_and_failures_are_errors(
    app: Conveyor,
    start_worker: StartWorker,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    app.use(Tracing(provider))

    @app.task(retries=1, backoff=Backoff.fixed(0.01))
    async def flaky() -> None:
        raise RuntimeError("printer on fire")

    handle = await flaky.enqueue()
    await start_worker()
    await handle.wait(10)
    await eventually(lambda: _ended(exporter, "process default", 2))
    (create,) = _named(exporter, "create default")
    attempts = sorted(
        _named(exporter, "process default"), key=lambda s: s.attributes["conveyor.attempt"]
    )
    assert [s.attributes["conveyor.attempt"] for s in attempts] == [1, 2]
    assert [s.attributes["conveyor.outcome"] for s in attempts] == ["retrying", "failed"]
    for span in attempts:
        assert _parent_of(span) == create.context.span_id  # both continue the enqueue's trace
        assert span.status.status_code is StatusCode.ERROR
        assert "printer on fire" in (span.status.description or "")


async def test_a_batch_is_one_create_span_every_job_carries(
    app: Conveyor, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app.use(Tracing(provider))

    @app.task
    async def send(n: int) -> None: ...

    handles = await app.enqueue_many([send.call(n) for n in range(5)])
    (create,) = _named(exporter, "create default")
    assert create.attributes["messaging.batch.message_count"] == 5
    carried = {(await app.get_job(h.id)).options.headers["traceparent"] for h in handles}
    parents = {value.rsplit("-", 1)[0] for value in carried}  # without the flags
    assert parents == {f"00-{create.context.trace_id:032x}-{create.context.span_id:016x}"}


async def test_without_an_sdk_nothing_is_carried(app: Conveyor, start_worker: StartWorker) -> None:
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # the API's no-op
    app.use(Tracing())

    @app.task
    async def send(n: int) -> int:
        return n

    handle = await send.enqueue(3)
    assert (await app.get_job(handle.id)).options.headers == {}
    await start_worker()
    assert (await handle.wait(10)).result == 3


async def _ended(exporter: InMemorySpanExporter, name: str, count: int) -> bool:
    return len(_named(exporter, name)) >= count
