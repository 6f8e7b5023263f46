"""An ASGI app that makes one OpenTelemetry span per request, through whatever tracer provider
the worker set up (otel_hooks.py); answers with its pid."""

import os

from opentelemetry import trace

tracer = trace.get_tracer("juggler.tests")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    with tracer.start_as_current_span("request") as span:
        span.set_attribute("http.target", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
