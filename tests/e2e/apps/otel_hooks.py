"""OpenTelemetry set up the way a deployment would: in --worker-start, after the fork (a span
processor's thread or an exporter's connection would not survive it). The exporter appends
one JSON line per span, with the pid of the process that exported it, to the file named by
$JUGGLER_TEST_SPANS."""

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


class FileSpanExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans):
        lines = "".join(
            json.dumps(
                {"pid": os.getpid(), "name": span.name, "attributes": dict(span.attributes or {})}
            )
            + "\n"
            for span in spans
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def worker_start(config):
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(FileSpanExporter(os.environ["JUGGLER_TEST_SPANS"]))
    )
    trace.set_tracer_provider(provider)


def worker_exit(config):
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
