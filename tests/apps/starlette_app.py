from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("starlette home")


async def echo(request):
    body = await request.body()
    return JSONResponse(
        {"len": len(body), "method": request.method, "q": dict(request.query_params)}
    )


app = Starlette(routes=[Route("/", home), Route("/echo", echo, methods=["POST", "PUT"])])
