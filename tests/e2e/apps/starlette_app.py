import os

from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

#: How many responses left through the path-send extension (counted by the middleware below).
PATHSENDS = 0


async def home(request):
    return PlainTextResponse("starlette home")


async def echo(request):
    body = await request.body()
    return JSONResponse(
        {"len": len(body), "method": request.method, "q": dict(request.query_params)}
    )


async def file(request):
    return FileResponse(os.environ["STARLETTE_FILE"])


async def pathsends(request):
    return PlainTextResponse(str(PATHSENDS))


def count_pathsends(app):
    async def middleware(scope, receive, send):
        async def counting_send(message):
            global PATHSENDS
            if message["type"] == "http.response.pathsend":
                PATHSENDS += 1
            await send(message)

        await app(scope, receive, counting_send)

    return middleware


app = count_pathsends(
    Starlette(
        routes=[
            Route("/", home),
            Route("/echo", echo, methods=["POST", "PUT"]),
            Route("/file", file),
            Route("/pathsends", pathsends),
        ]
    )
)
