"""Pyramid: views, JSON renderer, forms, redirects, errors, static views."""

from pathlib import Path

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.response import Response

STATIC = Path(__file__).parent / "static"


def home(request):
    return Response("<h1>pyramid</h1>", content_type="text/html")


def data(request):
    return {"ok": True, "q": request.params.mixed()}


def form(request):
    files = {}
    fields = {}
    for k, v in request.POST.items():
        if hasattr(v, "file"):
            files[k] = {"name": v.filename, "size": len(v.file.read())}
        else:
            fields[k] = v
    return {"form": fields, "files": files}


def go(request):
    return HTTPFound(location="/json?from=redirect")


def missing(request):
    raise HTTPNotFound("not here")


def boom(request):
    raise RuntimeError("boom")


with Configurator() as config:
    config.add_route("home", "/")
    config.add_view(home, route_name="home")
    config.add_route("json", "/json")
    config.add_view(data, route_name="json", renderer="json")
    config.add_route("form", "/form", request_method="POST")
    config.add_view(form, route_name="form", renderer="json")
    config.add_route("redirect", "/redirect")
    config.add_view(go, route_name="redirect")
    config.add_route("missing", "/missing")
    config.add_view(missing, route_name="missing")
    config.add_route("boom", "/boom")
    config.add_view(boom, route_name="boom")
    config.add_static_view(name="static", path=str(STATIC))
    app = config.make_wsgi_app()
