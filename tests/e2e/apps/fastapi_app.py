"""A FastAPI app using the features people rely on."""

import asyncio

from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()
DONE: list[str] = []


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"created": item.model_dump()}


@app.post("/tasks")
async def with_background(name: str, background: BackgroundTasks):
    async def record():
        await asyncio.sleep(0.5 if name.startswith("slow") else 0.01)
        DONE.append(name)
        print(f"BACKGROUND-DONE {name}", flush=True)

    background.add_task(record)
    return {"scheduled": name}


@app.get("/tasks")
async def list_done():
    return DONE


@app.get("/stream")
async def stream(n: int = 5):
    async def gen():
        for i in range(n):
            yield f"data: {i}\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


@app.get("/sse")
async def sse(request: Request, key: str):
    async def gen():
        try:
            while True:
                yield "data: tick\n\n"
                await asyncio.sleep(0.05)
        finally:
            print(f"SSE-CLOSED {key}", flush=True)

    return StreamingResponse(gen(), media_type="text/event-stream")


@app.get("/cookies")
async def cookies(response: Response):
    response.set_cookie("session", "abc")
    response.set_cookie("theme", "dark")
    response.headers["x-extra"] = "1"
    return {"ok": True}


@app.get("/state")
async def state(request: Request):
    return {"root_path": request.scope["root_path"], "url": str(request.url)}


@app.get("/boom")
async def boom():
    raise RuntimeError("handler failed")
