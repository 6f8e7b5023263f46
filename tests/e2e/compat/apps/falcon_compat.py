"""Falcon, the same resources as a WSGI app (``wsgi_app``) and an ASGI app (``asgi_app``)."""

from pathlib import Path

import falcon
import falcon.asgi

STATIC = Path(__file__).parent / "static"


class Things:
    def on_get(self, req, resp, thing_id=None):
        resp.media = {"id": thing_id, "params": req.params}

    def on_post(self, req, resp, thing_id=None):
        resp.status = falcon.HTTP_201
        resp.media = {"got": req.get_media()}


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPFound("/things/1")


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("boom")


class Refuse:
    def on_get(self, req, resp):
        raise falcon.HTTPForbidden(title="no", description="not for you")


class AsyncThings:
    async def on_get(self, req, resp, thing_id=None):
        resp.media = {"id": thing_id, "params": req.params}

    async def on_post(self, req, resp, thing_id=None):
        resp.status = falcon.HTTP_201
        resp.media = {"got": await req.get_media()}


class AsyncRedirect:
    async def on_get(self, req, resp):
        raise falcon.HTTPFound("/things/1")


class AsyncBoom:
    async def on_get(self, req, resp):
        raise RuntimeError("boom")


class AsyncRefuse:
    async def on_get(self, req, resp):
        raise falcon.HTTPForbidden(title="no", description="not for you")


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = iter([b"one\n", b"two\n", b"three\n"])


class AsyncStream:
    async def on_get(self, req, resp):
        async def gen():
            for part in (b"one\n", b"two\n", b"three\n"):
                yield part

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = gen()


wsgi_app = falcon.App()
asgi_app = falcon.asgi.App()
for app, things, go, boom, refuse, stream in [
    (wsgi_app, Things(), Redirect(), Boom(), Refuse(), Stream()),
    (asgi_app, AsyncThings(), AsyncRedirect(), AsyncBoom(), AsyncRefuse(), AsyncStream()),
]:
    app.add_route("/things", things)
    app.add_route("/things/{thing_id:int}", things)
    app.add_route("/redirect", go)
    app.add_route("/boom", boom)
    app.add_route("/refuse", refuse)
    app.add_route("/stream", stream)
    app.add_static_route("/static", str(STATIC))
