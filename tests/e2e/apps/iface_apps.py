"""Apps of each shape for the --interface tests: detection, mismatches, the startup line."""


def wsgi_app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"wsgi"]


class WsgiObject:
    def __call__(self, environ, start_response):
        return wsgi_app(environ, start_response)


wsgi_object = WsgiObject()


class AsgiObject:
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi"})


asgi_object = AsgiObject()


def ambiguous(*args):
    """Could be either: nothing in its signature tells."""
    raise RuntimeError("never called")
