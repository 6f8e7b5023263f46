"""What the server hands the app, echoed back as JSON: the ASGI scope (``asgi_app``) and the
WSGI environ (``wsgi_app``), with the request body. Differences here are differences in what
every framework sees."""

import json


def jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__name__}>"


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = {k: jsonable(v) for k, v in scope.items() if k not in ("app", "state")}
    out["body"] = body.decode("latin-1")
    data = json.dumps(out, sort_keys=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


def wsgi_app(environ, start_response):
    length = environ.get("CONTENT_LENGTH")
    body = environ["wsgi.input"].read(int(length)) if length else environ["wsgi.input"].read()
    out = {k: jsonable(v) for k, v in environ.items() if not k.startswith("gunicorn.")}
    out["body"] = body.decode("latin-1")
    data = json.dumps(out, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]
