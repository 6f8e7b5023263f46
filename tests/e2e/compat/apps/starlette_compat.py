"""Starlette: pages, JSON, forms, uploads, redirects, errors, StaticFiles, FileResponse,
streaming, cookies."""

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


async def home(request):
    return HTMLResponse("<h1>home</h1>")


async def item(request):
    return JSONResponse({"id": request.path_params["id"], "q": dict(request.query_params)})


async def form(request):
    data = await request.form()
    out = {}
    for k, v in data.multi_items():
        if hasattr(v, "read"):
            content = await v.read()
            out[k] = {"filename": v.filename, "size": len(content), "type": v.content_type}
        else:
            out[k] = v
    return JSONResponse(out)


async def echo(request):
    body = await request.body()
    return PlainTextResponse(body, headers={"x-length": str(len(body))})


async def redirect(request):
    return RedirectResponse("/", status_code=302)


async def boom(request):
    raise RuntimeError("boom")


async def stream(request):
    async def gen():
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(gen(), media_type="text/plain")


async def file(request):
    return FileResponse(STATIC / "data.bin", filename="data.bin")


async def cookies(request):
    r = PlainTextResponse("cookies")
    r.set_cookie("a", "1", httponly=True)
    r.set_cookie("b", "2", path="/x")
    return r


async def empty(request):
    return PlainTextResponse("", status_code=204)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{id}", item),
        Route("/form", form, methods=["POST"]),
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/redirect", redirect),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/file", file),
        Route("/cookies", cookies),
        Route("/empty", empty),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
)
