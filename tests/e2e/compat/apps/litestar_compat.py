"""Litestar: handlers, DTO-free JSON, forms, uploads, redirects, errors, static files, streams."""

from pathlib import Path
from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body
from litestar.response import File, Redirect, Stream
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"


@get("/", media_type=MediaType.HTML)
async def home() -> str:
    return "<h1>litestar</h1>"


@get("/items/{item_id:int}")
async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
    if item_id == 404:
        raise NotFoundException("no such item")
    return {"id": item_id, "q": q}


@post("/items")
async def create(data: dict[str, Any]) -> dict[str, Any]:
    return {"created": data}


@post("/upload")
async def upload(
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, UploadFile):
            out[k] = {"name": v.filename, "size": len(await v.read())}
        else:
            out[k] = v
    return out


@post("/echo", media_type=MediaType.TEXT)
async def echo(request: Request) -> bytes:
    return await request.body()


@get("/redirect", status_code=302)
async def go() -> Redirect:
    return Redirect(path="/items/1")


@get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@get("/stream")
async def stream() -> Stream:
    async def gen():
        for i in range(4):
            yield f"part {i}\n"

    return Stream(gen(), media_type=MediaType.TEXT)


@get("/file")
async def file() -> File:
    return File(STATIC / "page.html")


app = Litestar(
    route_handlers=[
        home,
        item,
        create,
        upload,
        echo,
        go,
        boom,
        stream,
        file,
        create_static_files_router(path="/static", directories=[STATIC]),
    ],
)
