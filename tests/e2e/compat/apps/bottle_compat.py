"""Bottle: routes, templates, JSON, forms, uploads, redirects, errors, static files."""

from pathlib import Path

import bottle

STATIC = Path(__file__).parent / "static"
app = bottle.Bottle()


@app.get("/")
def home():
    return bottle.template("<h1>{{title}}</h1>", title="bottle")


@app.get("/json")
def data():
    return {"ok": True, "q": dict(bottle.request.query)}


@app.post("/form")
def form():
    files = {
        k: {"name": f.raw_filename, "size": len(f.file.read())}
        for k, f in bottle.request.files.items()
    }
    return {"form": dict(bottle.request.forms), "files": files}


@app.get("/redirect")
def go():
    bottle.redirect("/json?from=redirect")


@app.get("/abort")
def refused():
    bottle.abort(401, "who are you")


@app.get("/boom")
def boom():
    raise RuntimeError("boom")


@app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain"
    for i in range(3):
        yield f"line {i}\n"


@app.get("/static/<name:path>")
def static(name):
    return bottle.static_file(name, root=str(STATIC))
