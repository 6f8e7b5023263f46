"""What the app is handed: the ASGI scope next to Uvicorn's, the WSGI environ next to
Gunicorn's, for requests that real clients send."""

import json

from harness import Req, pair_fixture

asgi = pair_fixture("echo_compat:asgi_app", "asgi")
wsgi = pair_fixture("echo_compat:wsgi_app", "wsgi")


def without(*keys: str, ports: tuple[str, ...] = ()):
    """Parses the echo, drops what is each server's own, and zeroes port numbers."""

    def normalise(data: bytes) -> bytes:
        if not data.startswith(b"{"):
            return data  # a header value
        echo = json.loads(data)
        for key in keys:
            echo.pop(key, None)
        for key in ports:
            if isinstance(echo.get(key), list):
                echo[key][1] = 0
            elif key in echo:
                echo[key] = "0"
        return json.dumps(echo, sort_keys=True, indent=1).encode()

    return normalise


# juggler speaks ASGI 2.4 (Uvicorn 2.3) and offers the path-send extension (Uvicorn none).
SCOPE = without("asgi", "extensions", ports=("client", "server"))
# Each server's own keys and objects; the CGI and wsgi.* values must agree.
ENVIRON = without(
    "RAW_URI",
    "SERVER_SOFTWARE",
    "wsgi.early_hints",
    "wsgi.errors",
    "wsgi.input",
    ports=("REMOTE_PORT", "SERVER_PORT"),
)

REQUESTS = [
    Req("GET", "/"),
    Req("GET", "/a/b%20c/%C3%A9?x=1&y=%20+z"),
    Req("GET", "/semi;colon/%2F/%FF?q=%FF"),
    Req("GET", "//double//slash"),
    Req("POST", "/form", data={"k": "v"}),
    Req("PUT", "/bytes", content=bytes(range(256))),
    Req(
        "GET",
        "/h",
        headers={"x-dup": "1", "X-Other": "a, b", "x-latin": "caf\xe9".encode("latin-1")},
    ),
    Req("DELETE", "/?"),
    Req("OPTIONS", "/x"),
]


def test_asgi_scope_keys_and_values(asgi):
    for req in REQUESTS:
        req.normalise = SCOPE
        asgi.compare(req)


def test_wsgi_environ(wsgi):
    for req in REQUESTS:
        req.normalise = ENVIRON
        wsgi.compare(req)
