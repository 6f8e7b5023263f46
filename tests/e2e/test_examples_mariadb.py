"""examples/fastapi_aiomysql end to end: juggler serving it, a real MariaDB behind it
(scripts/mariadb.sh, through the session fixture ``mariadb``), httpx in front, and the rows
and sessions checked in the database itself."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pymysql
import pytest
from conftest import ROOT, mysql_args, start

APP_DIR = str(ROOT / "examples" / "fastapi_aiomysql")
POOL = 24  # connections per worker in these tests
HELD = 16  # requests the concurrency test holds in flight at once


def query(url: str, sql: str, *params) -> tuple | None:
    conn = pymysql.connect(**mysql_args(url))
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def wait_until(condition, timeout: float = 30, every: float = 0.05) -> bool:
    """Polls ``condition`` (a database's state has no event to wait on) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


@pytest.fixture(scope="module")
def server(mariadb):
    j = start(
        "app:app", "--app-dir", APP_DIR, env={"MYSQL_URL": mariadb, "MYSQL_POOL_SIZE": str(POOL)}
    )
    yield j
    j.kill()


def test_inserts_and_reads_rows_in_mariadb(server, mariadb):
    name = f"widget-{uuid.uuid4()}"
    r = httpx.post(f"{server.url}/items", json={"name": name, "price": 3.25})
    assert r.status_code == 201
    item = r.json()
    assert item == {"id": item["id"], "name": name, "price": 3.25}
    # The row is in the database (committed: seen from another session) ...
    assert query(mariadb, "SELECT name, price FROM items WHERE id = %s", item["id"]) == (name, 3.25)
    # ... and the read endpoint returns it.
    assert httpx.get(f"{server.url}/items/{item['id']}").json() == item
    assert httpx.get(f"{server.url}/items/{item['id'] + 10**6}").status_code == 404


def test_reads_a_row_written_by_someone_else(server, mariadb):
    name = f"direct-{uuid.uuid4()}"
    conn = pymysql.connect(**mysql_args(mariadb))
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO items (name, price) VALUES (%s, %s)", (name, 7.5))
        item_id = cur.lastrowid
    r = httpx.get(f"{server.url}/items/{item_id}")
    assert r.status_code == 200
    assert r.json() == {"id": item_id, "name": name, "price": 7.5}


@pytest.mark.parametrize(
    "body", [{"name": "no price"}, {"name": "", "price": 1}, {"name": "neg", "price": -1}]
)
def test_refuses_bad_input_with_422_and_writes_nothing(server, mariadb, body):
    before = query(mariadb, "SELECT COUNT(*) FROM items")
    r = httpx.post(f"{server.url}/items", json=body)
    assert r.status_code == 422
    assert query(mariadb, "SELECT COUNT(*) FROM items") == before


def test_slow_query_runs_in_mariadb(server, mariadb):
    before = query(mariadb, "SHOW GLOBAL STATUS LIKE 'Com_select'")
    r = httpx.get(f"{server.url}/slow")
    assert r.status_code == 200 and r.json() == {"slept_ms": 10}
    # The query ran on the server (SLEEP is a SELECT there), not just an answer made up.
    assert int(query(mariadb, "SHOW GLOBAL STATUS LIKE 'Com_select'")[1]) > int(before[1])


def test_many_queries_in_flight_at_once_on_one_worker(server, mariadb):
    """The point of an async driver: one worker process, one thread, and HELD queries waiting
    in MariaDB at the same time. The test holds a write lock on the table, so every read
    waits in the database until it lets go; then each answers with the row."""
    item = httpx.post(f"{server.url}/items", json={"name": "held", "price": 1}).json()
    db = mariadb.rsplit("/", 1)[1]

    def waiting() -> int:
        return query(
            mariadb,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = %s AND STATE = 'Waiting for table metadata lock'",
            db,
        )[0]

    async def main() -> list[httpx.Response]:
        locker = pymysql.connect(**mysql_args(mariadb))
        with locker, locker.cursor() as cur:
            cur.execute("LOCK TABLES items WRITE")
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                reads = [
                    asyncio.create_task(client.get(f"/items/{item['id']}")) for _ in range(HELD)
                ]
                try:
                    held = await asyncio.to_thread(wait_until, lambda: waiting() == HELD)
                    assert held, f"only {waiting()} of {HELD} reads are waiting in MariaDB"
                finally:
                    cur.execute("UNLOCK TABLES")
                return await asyncio.gather(*reads)

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * HELD
    assert all(r.json() == item for r in responses)


def test_pool_opens_at_startup_and_closes_at_shutdown(juggler, mariadb):
    db = f"juggler_test_lifespan_{uuid.uuid4().hex[:8]}"
    query(mariadb, f"CREATE DATABASE {db}")
    url = mariadb.rsplit("/", 1)[0] + f"/{db}"

    def sessions() -> int:
        return query(
            mariadb, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", db
        )[0]

    def aborted() -> int:
        return int(query(mariadb, "SHOW GLOBAL STATUS LIKE 'Aborted_clients'")[1])

    try:
        aborted_before = aborted()
        j = juggler(
            "app:app",
            "--app-dir",
            APP_DIR,
            "--workers",
            "2",
            env={"MYSQL_URL": url, "MYSQL_POOL_SIZE": "3"},
        ).ready()
        for _ in range(2):
            j.wait_for(r"fastapi_aiomysql\[\d+\]: aiomysql pool open \(up to 3 connections\)")
        assert httpx.get(f"{j.url}/slow").status_code == 200
        # Each worker's pool holds its minimum of two connections from startup on.
        assert sessions() >= 4
        assert j.stop() == 0
        assert j.output.count("aiomysql pool closed") == 2, j.output
        assert wait_until(lambda: sessions() == 0), f"{sessions()} sessions left"
        # The pools said goodbye (COM_QUIT): a process that exits with its connections still
        # open leaves MariaDB to count each one as an aborted client.
        assert aborted() == aborted_before
    finally:
        query(mariadb, f"DROP DATABASE IF EXISTS {db}")


def test_without_a_database_url_fails_at_startup(juggler):
    j = juggler("app:app", "--app-dir", APP_DIR, env={"MYSQL_URL": ""})
    assert j.proc.wait(30) == 3  # lifespan startup failed
    assert "MYSQL_URL is not set" in j.output
