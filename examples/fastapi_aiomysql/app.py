"""FastAPI + aiomysql on MariaDB, served by juggler over ASGI.

    eval "$(scripts/mariadb.sh)"      # a local MariaDB; exports MYSQL_URL
    juggler --app-dir examples/fastapi_aiomysql app:app

The connection pool is opened in lifespan startup and closed in lifespan shutdown, so each
worker process (``--workers N``) has its own. Endpoints:

- ``GET /items/{id}``: one row by primary key (404 when there is none);
- ``POST /items``: insert a row from a Pydantic model (FastAPI answers 422 on bad input);
- ``GET /slow``: ``SELECT SLEEP(0.01)``, a query that takes 10 ms in the database (the same
  stand-in for a slow query as the asyncpg example's ``pg_sleep(0.01)``): the event loop serves
  other requests while it waits.

Settings: ``MYSQL_URL`` (required; ``mysql://user:password@host:port/database``),
``MYSQL_POOL_SIZE`` (most connections per worker, 100).
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

DSN = os.environ.get("MYSQL_URL", "")
POOL_SIZE = int(os.environ.get("MYSQL_POOL_SIZE", "100"))

# InnoDB takes a metadata lock for CREATE TABLE, so two workers starting at once may both run
# this: the second finds the table there.
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    price DOUBLE NOT NULL
) ENGINE=InnoDB
"""


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(ge=0)


class ItemOut(ItemIn):
    id: int


def log(message: str) -> None:
    # One write per line, so that the lines of two workers sharing stderr do not interleave.
    sys.stderr.write(f"fastapi_aiomysql[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def connect_args(url: str) -> dict[str, Any]:
    """aiomysql's keyword arguments from a ``mysql://`` URL (aiomysql takes no URL itself)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
        raise RuntimeError(f"MYSQL_URL must look like mysql://user:password@host:port/db: {url!r}")
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/") or None,
    }


@asynccontextmanager
async def lifespan(app: FastAPI):
    if not DSN:
        raise RuntimeError('MYSQL_URL is not set (eval "$(scripts/mariadb.sh)")')
    # autocommit: each statement is its own transaction, as asyncpg's pool methods are; without
    # it an INSERT would wait for a COMMIT that never comes.
    pool = await aiomysql.create_pool(
        minsize=2, maxsize=POOL_SIZE, autocommit=True, **connect_args(DSN)
    )
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(SCHEMA)
    app.state.pool = pool
    log(f"aiomysql pool open (up to {POOL_SIZE} connections)")
    try:
        yield
    finally:
        # close() refuses new acquires; clear() says goodbye (COM_QUIT) on each idle
        # connection, which wait_closed() alone would just drop, leaving MariaDB to log an
        # aborted connection for each; wait_closed() then waits for any still in use.
        pool.close()
        await pool.clear()
        await pool.wait_closed()
        log("aiomysql pool closed")


app = FastAPI(lifespan=lifespan)


async def fetchone(sql: str, *params: Any) -> tuple | None:
    async with app.state.pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(sql, params)
        return await cur.fetchone()


@app.get("/items/{item_id}", response_model=ItemOut)
async def read_item(item_id: int):
    row = await fetchone("SELECT id, name, price FROM items WHERE id = %s", item_id)
    if row is None:
        raise HTTPException(404, "no such item")
    return dict(zip(("id", "name", "price"), row, strict=True))


@app.post("/items", response_model=ItemOut, status_code=201)
async def create_item(item: ItemIn):
    # MariaDB (10.5 and later) returns the inserted row itself: one round trip.
    row = await fetchone(
        "INSERT INTO items (name, price) VALUES (%s, %s) RETURNING id, name, price",
        item.name,
        item.price,
    )
    return dict(zip(("id", "name", "price"), row, strict=True))


@app.get("/slow")
async def slow():
    await fetchone("SELECT SLEEP(0.01)")
    return {"slept_ms": 10}
