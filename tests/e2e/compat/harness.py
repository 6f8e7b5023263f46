"""Differential testing: one app under juggler and under a reference server (Uvicorn for ASGI,
Gunicorn for WSGI), the same requests to both, the answers compared.

What is compared, and why (docs/testing.md has the same list):
- the status;
- the headers, as a multiset of (lower-cased name, value): their order and case are not part
  of HTTP's meaning. Left out: ``date`` (the clock), ``server`` (each server names itself),
  and the hop-by-hop ``connection``/``keep-alive`` (a server's keep-alive policy, not the
  app's answer). An ``expires`` that is an HTTP date counts as ``HTTP-DATE`` whatever its
  time: apps set it from the clock (Django's admin: now), and the two servers answer a second
  apart now and then;
- the framing: two ``content-length`` headers must be equal; a ``content-length`` on one side
  and ``transfer-encoding: chunked`` on the other is accepted when the length is the body's
  (a server may frame a body the app left unsized either way: juggler gives a body sent in
  one message a length where Uvicorn and Gunicorn chunk it); for HEAD the lengths must be
  equal. The body's bytes are compared in every case;
- for a request marked ``server_error=True`` (the app raises and the server answers with its
  own error page), the status only;
- requests go over keep-alive connections, new ones after any 5xx (Uvicorn closes the
  connection after an app's exception without saying so; juggler keeps it open);
- the body, after normalisers: each server's own address (``127.0.0.1:PORT``) becomes
  ``SERVER`` everywhere (a Host echo, an absolute redirect), and a request's ``normalise``
  replaces what the app makes differently on each call (a CSRF token, a timestamp).

A difference fails with both answers side by side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# tests/ is on sys.path: its conftest.py puts it there.
from wsgi_servers import Server

APPS = Path(__file__).resolve().parent / "apps"

IGNORED = {"date", "server", "connection", "keep-alive"}
#: Headers an app sets from the clock: compared as "an HTTP date", not by value.
CLOCK_HEADERS = {"expires"}
HTTP_DATE = re.compile(r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
FRAMING = {"content-length", "transfer-encoding"}

Normaliser = Callable[[bytes], bytes]


@dataclass
class Req:
    """One request of a crawl."""

    method: str
    path: str
    headers: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    json: Any = None
    files: Any = None
    content: bytes | None = None
    #: Replaces, in the body and the header values, what differs on every call.
    normalise: Normaliser | None = None
    #: The app raises: the answer is the server's own error page, and only the status is
    #: compared (Gunicorn's is HTML, juggler's and Uvicorn's plain text).
    server_error: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: The body's size as received, before normalisers.
    size: int

    def show(self) -> str:
        lines = [f"  {self.status}"]
        lines += [f"  {k}: {v}" for k, v in self.headers]
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        lines.append(f"  body ({len(self.body)} bytes): {body!r}")
        return "\n".join(lines)


class Pair:
    """The same app served by juggler and by the reference server."""

    def __init__(
        self,
        app: str,
        interface: str,
        *,
        app_dir: Path = APPS,
        env: dict[str, str] | None = None,
        juggler_args: tuple[str, ...] = (),
    ) -> None:
        reference = "uvicorn" if interface == "asgi" else "gunicorn"
        # A fixed hash seed: frameworks that build a header from a set (Werkzeug's Allow)
        # list it in the same order in both processes.
        env = {"PYTHONPATH": str(app_dir), "PYTHONHASHSEED": "0", **(env or {})}
        # Started together, waited for together: two start-ups for the price of one.
        self.juggler = Server(
            app, *juggler_args, app_dir=app_dir, env=env, interface=interface, reference=""
        )
        self.reference = Server(app, app_dir=app_dir, env=env, reference=reference)
        self.reference_name = reference
        try:
            self.juggler.ready()
            self.reference.ready()
        except BaseException:
            self.stop()
            raise
        self.clients: list[httpx.Client] = []
        self.reconnect()

    def stop(self) -> None:
        for c in getattr(self, "clients", []):
            c.close()
        self.juggler.kill()
        self.reference.kill()

    def ask(self, req: Req) -> tuple[Answer, Answer]:
        # Built once, sent twice: the same bytes to both (a multipart boundary is random).
        first = self.clients[0].build_request(
            req.method,
            req.path,
            headers=req.headers,
            data=req.data,
            json=req.json,
            files=req.files,
            content=req.content,
        )
        body = first.read()
        headers = [(k, v) for k, v in first.headers.raw if k.lower() != b"host"]
        second = self.clients[1].build_request(req.method, req.path, headers=headers, content=body)
        answers = []
        for server, client, request in zip(
            (self.juggler, self.reference), self.clients, (first, second), strict=True
        ):
            answers.append(normalised(server.url, req, client.send(request)))
        if any(a.status >= 500 for a in answers):
            # Uvicorn closes a keep-alive connection when the app raised, even after a
            # complete 500 and without "Connection: close"; the next request would race the
            # close. Fresh connections keep that out of the next comparison.
            self.reconnect()
        return answers[0], answers[1]

    def reconnect(self) -> None:
        for c in self.clients:
            c.close()
        self.clients = [
            httpx.Client(base_url=s.url, follow_redirects=False, timeout=30)
            for s in (self.juggler, self.reference)
        ]

    def compare(self, req: Req) -> None:
        ours, theirs = self.ask(req)
        problems = differences(req, ours, theirs)
        if problems:
            pytest.fail(
                f"{req.id}: juggler and {self.reference_name} differ: {'; '.join(problems)}\n"
                f"juggler:\n{ours.show()}\n{self.reference_name}:\n{theirs.show()}",
                pytrace=False,
            )


def normalised(url: str, req: Req, r: httpx.Response) -> Answer:
    host = url.removeprefix("http://").encode()

    def fix(data: bytes) -> bytes:
        data = data.replace(host, b"SERVER")
        return req.normalise(data) if req.normalise else data

    def value(name: str, v: str) -> str:
        if name in CLOCK_HEADERS and HTTP_DATE.match(v):
            return "HTTP-DATE"
        return fix(v.encode("latin-1")).decode("latin-1")

    headers = sorted(
        (k.lower(), value(k.lower(), v))
        for k, v in r.headers.multi_items()
        if k.lower() not in IGNORED
    )
    return Answer(r.status_code, headers, fix(r.content), len(r.content))


def differences(req: Req, ours: Answer, theirs: Answer) -> list[str]:
    problems = []
    if ours.status != theirs.status:
        problems.append(f"status {ours.status} != {theirs.status}")
    if req.server_error:
        return problems
    a = [h for h in ours.headers if h[0] not in FRAMING]
    b = [h for h in theirs.headers if h[0] not in FRAMING]
    if a != b:
        only_ours = sorted(set(a) - set(b))
        only_theirs = sorted(set(b) - set(a))
        problems.append(f"headers only in juggler {only_ours}, only in reference {only_theirs}")
    problems += framing_differences(req, ours, theirs)
    if ours.body != theirs.body:
        problems.append("bodies differ")
    return problems


def framing_differences(req: Req, ours: Answer, theirs: Answer) -> list[str]:
    """Content-Length or chunked is the server's choice when the app leaves it open: a
    Content-Length on one side and chunked on the other is fine if it is the body's size."""
    lengths = [dict(x.headers).get("content-length") for x in (ours, theirs)]
    if lengths[0] == lengths[1]:
        return []
    if None not in lengths or req.method == "HEAD":
        return [f"content-length {lengths[0]} != {lengths[1]}"]
    declared, other = (ours, theirs) if lengths[0] is not None else (theirs, ours)
    if dict(other.headers).get("transfer-encoding") != "chunked":
        return ["one side has a content-length, the other neither it nor chunked"]
    if int(lengths[0] or lengths[1] or 0) != declared.size:
        return ["content-length does not match the body"]
    return []


def pair_fixture(app: str, interface: str, **kwargs: Any) -> Any:
    """A module-scoped fixture serving ``app`` under both servers."""

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[Pair]:
        p = Pair(app, interface, **kwargs)
        yield p
        p.stop()

    return fixture


def sub(pattern: bytes, replacement: bytes) -> Normaliser:
    """A normaliser replacing a regular expression's matches."""
    rx = re.compile(pattern)
    return lambda data: rx.sub(replacement, data)


def chain(*normalisers: Normaliser) -> Normaliser:
    def run(data: bytes) -> bytes:
        for n in normalisers:
            data = n(data)
        return data

    return run


#: The crawl of the Flask-style apps (Flask, and Quart, which mirrors Flask's API): the same
#: routes in `apps/flask_compat.py` and `apps/quart_compat.py`.
FLASK_STYLE_CRAWL = [
    Req("GET", "/"),
    Req("HEAD", "/"),
    Req("GET", "/json?a=1&a=2&b=%20"),
    Req("POST", "/form", data={"name": "juggler", "many": ["1", "2"]}),
    Req("POST", "/form", files={"up": ("f.txt", b"z" * 70_000, "text/plain")}, data={"k": "v"}),
    Req("POST", "/echo", content=bytes(range(256)) * 100),
    Req("GET", "/redirect"),
    Req("GET", "/abort"),
    Req("GET", "/boom"),
    Req("GET", "/stream"),
    Req("GET", "/static/style.css"),
    Req("GET", "/static/data.bin"),
    Req("GET", "/static/nope.css"),
    Req("GET", "/nowhere"),
    Req("DELETE", "/json"),
]
