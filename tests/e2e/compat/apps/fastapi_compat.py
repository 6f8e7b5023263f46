"""FastAPI: path and query validation, JSON bodies, forms and uploads, errors, streaming."""

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

STATIC = Path(__file__).parent / "static"

app = FastAPI(title="compat")
app.mount("/static", StaticFiles(directory=STATIC), name="static")


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/")
def home():
    return {"hello": "fastapi"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    if item_id == 404:
        raise HTTPException(status_code=404, detail="no such item")
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return item


@app.post("/upload")
async def upload(file: Annotated[UploadFile, File()], note: Annotated[str, Form()] = ""):
    content = await file.read()
    return {"filename": file.filename, "size": len(content), "note": note}


@app.get("/redirect")
def redirect():
    return RedirectResponse("/items/1?q=moved")


@app.get("/boom")
def boom():
    raise ValueError("boom")


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(4):
            yield f"data: {i}\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


@app.get("/file")
async def file():
    return FileResponse(STATIC / "style.css")
