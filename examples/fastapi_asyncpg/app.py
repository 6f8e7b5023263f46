"""FastAPI + asyncpg on PostgreSQL, served by juggler over ASGI.

    eval "$(scripts/postgres.sh)"     # a local PostgreSQL; exports DATABASE_URL
    juggler --app-dir examples/fastapi_asyncpg app:app

The connection pool is opened in lifespan startup and closed in lifespan shutdown, so each
worker process (``--workers N``) has its own. Endpoints:

- ``GET /items/{id}``: one row by primary key (404 when there is none);
- ``POST /items``: insert a row from a Pydantic model (FastAPI answers 422 on bad input);
- ``GET /slow``: ``SELECT pg_sleep(0.01)``, a query that takes 10 ms in the database, the
  stand-in for a slow query: the event loop serves other requests while it waits;
- ``GET /cpu``: about 5 ms of hashing in Python, which holds the event loop (and the GIL):
  the benchmark's counterpart to ``/slow``;
- ``GET /sqlmodel/items/{id}``: the same read as ``/items/{id}`` through SQLModel's
  ``AsyncSession`` (SQLAlchemy on asyncpg).

Settings: ``DATABASE_URL`` (required), ``PG_POOL_SIZE`` (most connections per worker, 100).
"""

from __future__ import annotations

import hashlib
import os
import sys
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

DSN = os.environ.get("DATABASE_URL", "")
POOL_SIZE = int(os.environ.get("PG_POOL_SIZE", "100"))
# Iterations of sha256 over its own 32-byte digest: about 5 ms on the benchmark machine.
# Inputs this small are hashed without releasing the GIL, so this is CPU-bound Python.
HASH_ROUNDS = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    price double precision NOT NULL
)
"""
# Two workers starting at once must not both create the table (a unique-index race in the
# catalog), so creation takes a transaction-scoped advisory lock first.
SCHEMA_LOCK = 7_100_010


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(ge=0)


class ItemOut(ItemIn):
    id: int


class Item(SQLModel, table=True):
    """The ``items`` table as SQLModel sees it (for the SQLModel variant of the read)."""

    __tablename__ = "items"
    id: int | None = SQLField(default=None, primary_key=True)
    name: str
    price: float


def log(message: str) -> None:
    # One write per line, so that the lines of two workers sharing stderr do not interleave.
    sys.stderr.write(f"fastapi_asyncpg[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


@asynccontextmanager
async def lifespan(app: FastAPI):
    if not DSN:
        raise RuntimeError('DATABASE_URL is not set (eval "$(scripts/postgres.sh)")')
    pool = await asyncpg.create_pool(
        DSN,
        min_size=2,
        max_size=POOL_SIZE,
        server_settings={"application_name": "fastapi_asyncpg"},
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(SCHEMA)
    engine = create_async_engine(
        DSN.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=5
    )
    app.state.pool = pool
    app.state.engine = engine
    log(f"asyncpg pool open (up to {POOL_SIZE} connections)")
    try:
        yield
    finally:
        await engine.dispose()
        await pool.close()
        log("asyncpg pool closed")


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}", response_model=ItemOut)
async def read_item(item_id: int):
    row = await app.state.pool.fetchrow("SELECT id, name, price FROM items WHERE id = $1", item_id)
    if row is None:
        raise HTTPException(404, "no such item")
    return dict(row)


@app.post("/items", response_model=ItemOut, status_code=201)
async def create_item(item: ItemIn):
    row = await app.state.pool.fetchrow(
        "INSERT INTO items (name, price) VALUES ($1, $2) RETURNING id, name, price",
        item.name,
        item.price,
    )
    return dict(row)


@app.get("/slow")
async def slow():
    await app.state.pool.execute("SELECT pg_sleep(0.01)")
    return {"slept_ms": 10}


@app.get("/cpu")
async def cpu():
    digest = b"juggler"
    for _ in range(HASH_ROUNDS):
        digest = hashlib.sha256(digest).digest()
    return {"sha256": digest.hex()}


@app.get("/sqlmodel/items/{item_id}", response_model=ItemOut)
async def read_item_sqlmodel(item_id: int):
    async with AsyncSession(app.state.engine) as session:
        item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(404, "no such item")
    return ItemOut(id=item.id, name=item.name, price=item.price)
