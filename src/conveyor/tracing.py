"""OpenTelemetry tracing: a span per enqueue and per attempt, one trace from
the request that enqueued a job to each of its runs (``conveyor[otel]``).

``app.use(Tracing())`` adds it, as middleware (``conveyor.middleware``):

- Each enqueue (a batch, a flow) is a ``create <queue>`` span of kind
  PRODUCER, a child of whatever span is current where it is called (the web
  request's). Its context goes into each job as the W3C ``traceparent``
  (``JobOptions.headers``, through the globally configured propagator).
- Each attempt is a ``process <queue>`` span of kind CONSUMER whose parent
  is that context, current while the job's function runs (a sync function's
  thread included), so spans the job makes nest under it. It ends with the
  attempt, with ``conveyor.outcome`` set and an error status unless it
  completed or was released. A sandboxed job's own spans (in its child
  process) are not joined to it.

Attributes follow OpenTelemetry's messaging conventions (``messaging.system``
``conveyor``, ``messaging.destination.name`` the queue, ``messaging.message.id``
the job id) plus ``conveyor.task`` and ``conveyor.attempt``. Only the API is
needed: until the application installs an SDK and a tracer provider every span
is a no-op and nothing is added to the jobs.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from conveyor.backends.values import NewJob
from conveyor.job import Job
from conveyor.middleware import Middleware, Outcome, with_headers
from conveyor.version import version

__all__ = ["Tracing"]

SYSTEM = "conveyor"
_FINE = frozenset({"completed", "released"})  # endings that are no error


class Tracing(Middleware):
    """Spans of enqueues and attempts (the module's docstring); the global
    tracer provider unless one is given."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(SYSTEM, version(), tracer_provider=tracer_provider)
        # The attempts running in this process: their spans and the context
        # tokens that made them current, by job id and attempt.
        self._running: dict[tuple[str, int], tuple[Span, Token[Context]]] = {}

    async def enqueuing(self, jobs: list[NewJob]) -> list[NewJob]:
        queues = sorted({job.queue for job in jobs})
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "create",
            "messaging.destination.name": ",".join(queues),
        }
        if len(jobs) == 1:
            attributes["messaging.message.id"] = jobs[0].id
            attributes["conveyor.task"] = jobs[0].task
        else:
            attributes["messaging.batch.message_count"] = len(jobs)
        name = f"create {queues[0]}" if len(queues) == 1 else "create"
        carrier: dict[str, str] = {}
        with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
            propagate.inject(carrier)
        if not carrier:  # no SDK: nothing to carry
            return jobs
        return with_headers(jobs, carrier)

    async def started(self, job: Job) -> None:
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=propagate.extract(job.options.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "conveyor.task": job.task,
                "conveyor.attempt": job.attempts,
            },
        )
        # The worker runs the function in the task that called this hook:
        # attached here, the span is current there.
        token = context.attach(trace.set_span_in_context(span))
        self._running[job.id, job.attempts] = (span, token)

    async def finished(self, job: Job, outcome: Outcome) -> None:
        found = self._running.pop((job.id, job.attempts), None)
        if found is None:
            return
        span, token = found
        span.set_attribute("conveyor.outcome", outcome.ending)
        if outcome.ending not in _FINE:
            span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.ending))
        span.end()
        context.detach(token)
