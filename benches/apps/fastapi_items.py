"""FastAPI with a path parameter, a query parameter and a Pydantic model in the response."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    item_id: int
    q: str | None = None
    tags: list[str] = []


@app.get("/items/{item_id}", response_model=Item)
async def read_item(item_id: int, q: str | None = None) -> Item:
    return Item(item_id=item_id, q=q, tags=["a", "b", "c"])
