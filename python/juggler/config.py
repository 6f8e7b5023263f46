"""Every option juggler has, declared once.

The declarations drive the command line (``cli.py``), ``juggler.run(**options)``, the
``JUGGLER_*`` environment variables, the TOML file, the README's tables
(``scripts/options_doc.py``) and what the Rust core reads: the resolved ``Config`` hands
its groups of options (``config.limits``, ``config.websocket``, ...) to ``_juggler`` by
attribute, under the same names. Precedence: explicit arguments, then environment
variables, then the file, then defaults.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ._juggler import ConfigError
from .validators import (
    Validator,
    boolean,
    header,
    hook,
    host_port,
    integer,
    many,
    one_of,
    seconds,
    split_host_port,
    text,
    url_path,
)

__all__ = ["OPTIONS", "Config", "ConfigError", "Option", "split_host_port"]

ENV_PREFIX = "JUGGLER_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOOPS = ("auto", "asyncio", "uvloop")
LIFESPANS = ("auto", "on", "off")
INTERFACES = ("auto", "asgi", "wsgi")
HTTP_CHOICES = ("auto", "1", "2", "h11", "httptools")
#: "websockets" and "wsproto" are Uvicorn's names; juggler has one implementation, in Rust.
WS_CHOICES = ("auto", "none", "websockets", "wsproto")


#: The groups the Rust core reads (``_juggler.CoreConfig`` extracts all but "wsgi" by
#: attribute, ``_juggler.WsgiInterface`` that one); an option in none is Python's alone.
GROUPS = ("limits", "timeouts", "http2", "websocket", "access", "responses", "proxy", "wsgi")
PORT = integer(0, 65535)
POSITIVE = integer(1)
NON_NEGATIVE = integer(0)


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    #: The command line's --help text.
    help: str
    #: Takes text (flag, environment, TOML string) or a typed value (run(), TOML).
    validate: Validator | None = None
    #: "value" takes an argument, "bool" is a --x/--no-x pair, "flag" is a plain switch,
    #: "multi" may be repeated.
    kind: str = "value"
    metavar: str | None = None
    #: Which of GROUPS hands it to the Rust core, if any.
    group: str | None = None
    #: README: the table ("general" or "protocols"), the meaning (help when None) and the
    #: default as shown (derived from ``default`` when None).
    section: str = "general"
    doc: str | None = None
    doc_default: str | None = None

    def __post_init__(self) -> None:
        if self.validate is None:
            default = {"bool": boolean, "flag": boolean, "multi": many(text)}.get(self.kind, text)
            object.__setattr__(self, "validate", default)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def convert(self, value: Any, source: str) -> Any:
        """The option's typed value from ``value``, or a ConfigError naming the flag (and the
        variable or file it came from)."""
        if value is None:
            return None
        assert self.validate is not None
        try:
            return self.validate(value)
        except (TypeError, ValueError) as exc:
            where = f"{self.flag} (from {source})" if source != "command line" else self.flag
            raise ConfigError(f"invalid value {value!r} for {where}: {exc}") from None


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        None,
        "Read options from this TOML file (same names as the flags; flags and environment "
        "variables win).",
        metavar="FILE",
        doc="read options from this TOML file",
    ),
    Option(
        "host",
        "127.0.0.1",
        "Bind socket to this host.",
        metavar="HOST",
        doc="bind address (IPv6 such as `::1` works)",
    ),
    Option(
        "port",
        8000,
        "Bind socket to this port (0 picks a free one).",
        PORT,
        metavar="PORT",
        doc="bind port; `0` picks a free one (printed on the startup line)",
    ),
    Option(
        "uds",
        None,
        "Bind to a UNIX domain socket at this path.",
        metavar="PATH",
        doc="bind a UNIX domain socket instead",
    ),
    Option(
        "fd",
        None,
        "Serve on an already bound socket with this file descriptor.",
        integer(0),
        metavar="N",
        doc="serve on an already bound socket",
    ),
    Option(
        "backlog",
        2048,
        "Maximum number of connections waiting to be accepted.",
        POSITIVE,
        doc="listen backlog",
    ),
    Option(
        "root_path",
        "",
        "Set the ASGI 'root_path' for apps mounted below a URL prefix.",
        group="responses",
        doc="ASGI `root_path` / WSGI `SCRIPT_NAME` for apps mounted below a prefix",
    ),
    Option(
        "interface",
        "auto",
        "Which interface the app speaks: auto, asgi or wsgi; auto tells a WSGI callable from an"
        " ASGI one.",
        one_of(*INTERFACES),
        doc="`auto`, `asgi` or `wsgi`",
    ),
    Option(
        "threads",
        32,
        "WSGI: most threads running the app at once (started on demand, idle ones retire after"
        " 60 s).",
        POSITIVE,
        metavar="N",
        group="wsgi",
        doc=(
            "WSGI: most threads running the app at once; started on demand, idle ones retire"
            " after 60 s"
        ),
    ),
    Option(
        "queue_size",
        None,
        "WSGI: requests that may wait for a free thread; beyond this they get 503. By default"
        " none are refused: from 1000 waiting the worker stops accepting connections, which"
        " wait in the listen backlog.",
        POSITIVE,
        metavar="N",
        group="wsgi",
        doc_default="none",
        doc=(
            "WSGI: requests that may wait for a free thread; more get 503. Unset, none are"
            " refused: while 1,000 wait, the worker stops accepting and new connections wait"
            " in the listen backlog"
        ),
    ),
    Option(
        "queue_timeout",
        0.0,
        "WSGI: a request that waited this long for a free thread gets 503 (with Retry-After)"
        " and never reaches the app; 0 waits as long as it takes.",
        seconds,
        metavar="SECONDS",
        group="wsgi",
        doc_default="off",
        doc=(
            "WSGI: seconds a request may wait for a free thread; past that it gets 503 with"
            " `Retry-After` and never reaches the app (0: no bound)"
        ),
    ),
    Option(
        "workers",
        1,
        "Number of worker processes, each with its own event loop (also read from"
        " WEB_CONCURRENCY).",
        POSITIVE,
        metavar="N",
        doc="worker processes, each with its own event loop (`WEB_CONCURRENCY` is read too)",
    ),
    Option(
        "reuse_port",
        False,
        "Each worker binds its own socket with SO_REUSEPORT, and the kernel spreads connections"
        " between them.",
        kind="flag",
        doc="each worker binds its own socket with SO_REUSEPORT",
    ),
    Option(
        "preload",
        False,
        "Import the app in the supervisor before starting the workers (they share its memory;"
        " SIGHUP then restarts workers without new code).",
        kind="flag",
        doc="import the app in the supervisor before forking (SIGHUP then keeps the old code)",
    ),
    Option(
        "timeout_worker",
        30.0,
        "Kill and replace a worker whose event loop has not turned, or recycle one whose WSGI"
        " call has made no progress, for this long (0 turns the check off).",
        seconds,
        metavar="SECONDS",
        doc=(
            "seconds after which a worker whose event loop has not turned is killed, or one whose"
            " WSGI call has made no progress is replaced; `0` turns it off"
        ),
    ),
    Option(
        "loop_watchdog",
        None,
        "ASGI: when the event loop has not turned for this long, log the request it is running,"
        " for how long, and the Python stack down to the blocking line (off by default).",
        seconds,
        metavar="SECONDS",
        group="timeouts",
        doc_default="off",
        doc=(
            "ASGI: when a worker's event loop has not turned for this long, log on"
            " `juggler.error` the request it runs, for how long, and the loop thread's Python"
            ' stack down to the blocking line (see "Blocked event loops")'
        ),
    ),
    Option(
        "max_loop_lag",
        None,
        "ASGI: answer new requests 503 with Retry-After while the event loop lags this many"
        " milliseconds or more, instead of queueing them behind it (off by default).",
        seconds,
        metavar="MS",
        group="limits",
        doc_default="off",
        doc=(
            "ASGI: while a worker's event loop lags this many milliseconds or more, answer new"
            " requests 503 with `Retry-After: 1` instead of queueing them behind it"
        ),
    ),
    Option(
        "max_requests",
        None,
        "Replace a worker gracefully after it has taken about this many requests.",
        POSITIVE,
        metavar="N",
        doc_default="none",
        doc="replace a worker gracefully after about this many requests",
    ),
    Option(
        "max_requests_jitter",
        0,
        "Add a random 0..N to each worker's --max-requests, so workers do not restart together.",
        NON_NEGATIVE,
        metavar="N",
        doc="add a random 0..N to each worker's `--max-requests`",
    ),
    Option(
        "max_worker_memory",
        None,
        "Replace a worker gracefully once its resident memory (RSS) passes this many MiB;"
        " the supervisor samples it about once a second.",
        POSITIVE,
        metavar="MIB",
        doc_default="none",
        doc=(
            "replace a worker gracefully once its resident memory (RSS, sampled by the"
            " supervisor about once a second) passes this many MiB"
        ),
    ),
    Option(
        "reload",
        False,
        "Restart the workers when a watched file changes (for development; needs watchfiles).",
        kind="flag",
        doc="restart the workers when a watched file changes (development; needs `watchfiles`)",
    ),
    Option(
        "reload_dir",
        (),
        "Directory to watch with --reload; repeat for more. [default: --app-dir]",
        kind="multi",
        metavar="DIR",
        doc_default="`--app-dir`",
        doc="directory to watch; repeatable",
    ),
    Option(
        "reload_include",
        (),
        "Glob of more files whose changes reload, besides *.py; repeat for more.",
        kind="multi",
        metavar="GLOB",
        doc_default="`*.py`",
        doc="more files whose changes reload (added to `*.py`); repeatable",
    ),
    Option(
        "reload_exclude",
        (),
        "Glob of files whose changes never reload, besides .*, *.py[cod], *~ and .*.sw?;"
        " repeat for more.",
        kind="multi",
        metavar="GLOB",
        doc_default="`.*`, `*.py[cod]`, `*~`, `.*.sw?`",
        doc=(
            "more files whose changes never reload (added to those); matched against names and"
            " paths below the watched directory; repeatable"
        ),
    ),
    Option(
        "pid",
        None,
        "Write the supervisor's process id to this file.",
        metavar="FILE",
        doc="write the supervisor's pid to this file (removed on exit)",
    ),
    Option(
        "on_starting",
        None,
        "Call this function ('module:function') with the config in the supervisor before it"
        " binds and starts workers.",
        hook,
        metavar="MODULE:FUNCTION",
        doc='hook run in the supervisor before it binds and forks (see "Hooks")',
    ),
    Option(
        "on_reload",
        None,
        "Call this function ('module:function') with the config in the supervisor when a"
        " reload (SIGHUP, --reload) begins.",
        hook,
        metavar="MODULE:FUNCTION",
        doc="hook run in the supervisor when a reload (SIGHUP, `--reload`) begins",
    ),
    Option(
        "on_exit",
        None,
        "Call this function ('module:function') with the config in the supervisor once every"
        " worker has stopped, before juggler exits.",
        hook,
        metavar="MODULE:FUNCTION",
        doc="hook run in the supervisor once every worker has stopped, before juggler exits",
    ),
    Option(
        "worker_start",
        None,
        "Call this function ('module:function') with the config in each worker after the fork"
        " and before the app is imported: create tracing, error reporting and pools here.",
        hook,
        metavar="MODULE:FUNCTION",
        doc=(
            "hook run in each worker after the fork and before the app is imported: where"
            " OpenTelemetry span processors, Sentry and database pools are created"
        ),
    ),
    Option(
        "worker_exit",
        None,
        "Call this function ('module:function') with the config in each worker once it has"
        " drained, before the process exits.",
        hook,
        metavar="MODULE:FUNCTION",
        doc="hook run in each worker once it has drained (not in a killed one)",
    ),
    Option(
        "lifespan",
        "auto",
        "Lifespan protocol handling.",
        one_of(*LIFESPANS),
        doc="`auto`, `on` or `off` (ASGI only)",
    ),
    Option(
        "log_level",
        "info",
        "Log level.",
        one_of(*LOG_LEVELS),
        doc="`critical`, `error`, `warning`, `info`, `debug`, `trace`",
    ),
    Option(
        "access_log",
        True,
        "Write an access log line per request.",
        kind="bool",
        group="access",
        doc="one line per request on `juggler.access`",
    ),
    Option(
        "access_log_format",
        None,
        "Access log line in Gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(D)s'.",
        metavar="FORMAT",
        group="access",
        doc_default="Uvicorn's line",
        doc=(
            "Gunicorn's atoms: `%(h)s` client, `%(l)s`/`%(u)s` `-`, `%(t)s` time (UTC), `%(r)s`"
            " request line, `%(m)s`, `%(U)s` path, `%(q)s` query, `%(H)s` protocol, `%(s)s`"
            " status, `%(B)s`/`%(b)s` body bytes, `%(f)s` referer, `%(a)s` user agent,"
            " `%(T)s`/`%(M)s`/`%(D)s`/`%(L)s` duration in s/ms/µs/decimal s, `%(p)s` pid,"
            " `%({header}i)s` a request header, `%%`"
        ),
    ),
    Option(
        "access_log_json",
        False,
        "Write the access log as one JSON object per line.",
        kind="bool",
        group="access",
        doc=(
            "one JSON object per line: time, client, method, path, query, http_version, status,"
            " bytes, duration_ms, pid, request_id (`X-Request-ID`, or generated)"
        ),
    ),
    Option(
        "log_config",
        None,
        "Configure logging from this file: dictConfig JSON or YAML (.json, .yaml, .yml), "
        "else logging's ini format.",
        metavar="FILE",
        doc=(
            "configure logging first: dictConfig `.json`, `.yaml`/`.yml` (needs PyYAML), else"
            " `logging.config.fileConfig` ini"
        ),
    ),
    Option(
        "timeout_keep_alive",
        5.0,
        "Close idle keep-alive connections after this many seconds, and HTTP/2 connections"
        " without an open stream (0 turns keep-alive off).",
        seconds,
        metavar="SECONDS",
        group="timeouts",
        doc=(
            "seconds an idle connection (and the request head that follows) may take; an HTTP/2"
            " connection without an open stream for this long gets GOAWAY; `0` turns keep-alive"
            " off (HTTP/2 then idles 5 s)"
        ),
    ),
    Option(
        "timeout_graceful_shutdown",
        30.0,
        "On shutdown, wait this long for in-flight requests before cancelling them.",
        seconds,
        metavar="SECONDS",
        doc="on SIGTERM/SIGINT, seconds to wait for in-flight requests before cancelling them",
    ),
    Option(
        "shutdown_delay",
        0.0,
        "On SIGTERM/SIGINT, first go on serving this long while --health-path answers 503, so"
        " that load balancers stop sending here; a second signal skips the rest.",
        seconds,
        metavar="SECONDS",
        doc=(
            "on SIGTERM/SIGINT, seconds to go on serving while `--health-path` answers 503, for"
            " load balancers (a Kubernetes readiness probe) to stop sending here, before the"
            " graceful stop begins; a second SIGTERM or SIGINT skips the rest"
        ),
    ),
    Option(
        "limit_concurrency",
        None,
        "Answer 503 once this many requests are in flight.",
        POSITIVE,
        group="limits",
        doc_default="none",
        doc="answer 503 once this many requests are in flight",
    ),
    Option(
        "max_header_size",
        65536,
        "Largest request head (request line and headers) in bytes; larger ones get 431.",
        POSITIVE,
        metavar="BYTES",
        group="limits",
        doc="largest request head in bytes; larger ones are refused (431 or close)",
    ),
    Option(
        "limit_request_body",
        0,
        "Largest request body in bytes (0: no limit); a larger one gets 413: at once when its"
        " Content-Length says so, otherwise when the body reaches the limit.",
        NON_NEGATIVE,
        metavar="BYTES",
        group="limits",
        doc_default="`0` (none)",
        doc=(
            "largest request body; a larger Content-Length gets 413 before the app is called, a"
            " chunked (or HTTP/2) body is cut when it passes the limit (see Behaviour)"
        ),
    ),
    Option(
        "limit_request_line",
        0,
        "Largest request line (method, target and version) in bytes (0: only --max-header-size"
        " bounds it); a longer one gets 414.",
        NON_NEGATIVE,
        metavar="BYTES",
        group="limits",
        doc_default="`0` (none)",
        doc=(
            "largest request line (`METHOD target HTTP/1.1`); longer gets 414. Gunicorn's name;"
            " off by default, `--max-header-size` bounds the whole head"
        ),
    ),
    Option(
        "limit_request_fields",
        100,
        "Most header fields in a request (0: as many as --max-header-size allows); more get 431.",
        NON_NEGATIVE,
        metavar="N",
        group="limits",
        doc=(
            "most header fields; more get 431 (hyper's own bound, also Gunicorn's default); `0`:"
            " as many as `--max-header-size` allows"
        ),
    ),
    Option(
        "limit_request_field_size",
        0,
        "Largest header field (name, value and separator) in bytes (0: only --max-header-size"
        " bounds it); a larger one gets 431.",
        NON_NEGATIVE,
        metavar="BYTES",
        group="limits",
        doc_default="`0` (none)",
        doc="largest header field (`name: value`); larger gets 431",
    ),
    Option(
        "timeout_request_head",
        0.0,
        "Close a connection whose request head has not fully arrived this many seconds after its"
        " first byte (0: the head only has to arrive within --timeout-keep-alive of the"
        " connection going idle).",
        seconds,
        metavar="SECONDS",
        group="timeouts",
        doc_default="`0` (off)",
        doc=(
            "seconds a request head may take from its first byte; a slower one (slowloris) closes"
            " the connection. Off, the head has to arrive within `--timeout-keep-alive` of the"
            " connection going idle"
        ),
    ),
    Option(
        "timeout_request",
        0.0,
        "Answer 504 when the app has not started its response after this many seconds, and cancel"
        " the ASGI task (a WSGI thread cannot be stopped: its response is dropped and logged)."
        " 0 turns it off.",
        seconds,
        metavar="SECONDS",
        group="timeouts",
        doc_default="`0` (off)",
        doc=(
            "seconds a handler may take to start its response; then the client gets 504, an ASGI"
            " task is cancelled, a WSGI response is dropped (the thread runs on)"
        ),
    ),
    Option(
        "timeout_write",
        60.0,
        "Close a connection whose client has taken nothing of what is sent (a response, a"
        " WebSocket message) for this many seconds; the app's send() raises ClientDisconnected."
        " A WSGI thread also waits this long at most for its client. 0 turns it off.",
        seconds,
        metavar="SECONDS",
        group="timeouts",
        doc=(
            "seconds a connection may go without its client taking any of what is sent (a"
            " response, a WebSocket message), as nginx's `send_timeout`; then it is closed, a"
            " waiting `send()` raises `juggler.ClientDisconnected`, `receive()` gets"
            " `http.disconnect` (`websocket.disconnect` 1006) and the access line ends with"
            " `[write timeout]`. A slow client that keeps taking bytes is never cut off. A WSGI"
            " thread waits this long at most for its client (to send the body or take the"
            " response). `0` turns it off"
        ),
    ),
    Option(
        "health_path",
        None,
        "Answer requests for this path in the server itself, without calling the app: 200 while"
        " serving, 503 during --shutdown-delay and once shutting down.",
        url_path,
        metavar="PATH",
        group="responses",
        doc_default="none",
        doc=(
            "answered by juggler itself without calling the app: 200 while serving, 503 during"
            " `--shutdown-delay` and while draining"
        ),
    ),
    Option(
        "metrics_bind",
        None,
        "Serve Prometheus metrics of all workers (requests, statuses, durations, connections,"
        " bytes, loop lag, WSGI threads, worker restarts) at http://HOST:PORT/metrics, from the"
        " supervisor. Off by default.",
        host_port,
        metavar="HOST:PORT",
        doc_default="off",
        doc=(
            "Prometheus metrics of all workers at `http://HOST:PORT/metrics` (`[::1]:PORT` for"
            ' IPv6, `:PORT` for every IPv4 interface), served by the supervisor (see "Metrics")'
        ),
    ),
    Option(
        "proxy_headers",
        True,
        "Take the client address, scheme and host from X-Forwarded-For/Proto/Host/Port or"
        " Forwarded, when the peer is in --forwarded-allow-ips.",
        kind="bool",
        group="proxy",
        doc=(
            "take the client address, scheme and host from `X-Forwarded-For/Proto/Host/Port` or"
            " `Forwarded` (RFC 7239), from trusted peers only"
        ),
    ),
    Option(
        "forwarded_allow_ips",
        None,
        "Comma-separated peers trusted with proxy headers: IP addresses, networks (10.0.0.0/8),"
        " '*' for all, 'unix:' for peers on a UNIX socket (also read from FORWARDED_ALLOW_IPS)."
        " [default: 127.0.0.1]",
        metavar="LIST",
        group="proxy",
        doc_default="`127.0.0.1`",
        doc=(
            "comma-separated peers trusted with proxy headers: addresses, networks (`10.0.0.0/8`,"
            " `fd00::/8`), `*` for any peer, `unix:` for peers on a UNIX socket;"
            " `FORWARDED_ALLOW_IPS` is read too"
        ),
    ),
    Option(
        "proxy_protocol",
        False,
        "Read a PROXY protocol header (v1 or v2, as HAProxy and cloud load balancers send)"
        " on each connection from a --forwarded-allow-ips peer; a header from any other peer"
        " closes its connection.",
        kind="flag",
        group="proxy",
        doc=(
            "read a PROXY protocol header (v1 text or v2 binary) before TLS and HTTP, from"
            " `--forwarded-allow-ips` peers only, and take the client address from it (see"
            ' "PROXY protocol" under "Behaviour")'
        ),
    ),
    Option(
        "factory",
        False,
        "Treat APP as a factory: call it with no arguments.",
        kind="flag",
        doc="call APP with no arguments to get the app",
    ),
    Option(
        "app_dir",
        ".",
        "Look for APP in this directory (added to sys.path).",
        metavar="DIR",
        doc="directory added to `sys.path` before importing APP",
    ),
    Option(
        "loop",
        "auto",
        "Event loop implementation.",
        one_of(*LOOPS),
        doc="`auto` (uvloop when installed), `asyncio`, `uvloop`",
    ),
    Option(
        "header",
        (),
        "Add a header to every response; repeat for more.",
        many(header),
        kind="multi",
        metavar="NAME:VALUE",
        group="responses",
        doc="add a response header; repeatable",
    ),
    Option(
        "http",
        "auto",
        "HTTP versions: 'auto' serves HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or by ALPN "
        "over TLS), '1' only HTTP/1.1, '2' only HTTP/2 ('h11' and 'httptools' mean '1').",
        one_of(*HTTP_CHOICES),
        group="http2",
        section="protocols",
        doc=(
            "`auto`: HTTP/1.1 and HTTP/2 on one port (h2c by prior knowledge, or chosen by ALPN"
            " over TLS); `1`: HTTP/1.1 only (Uvicorn's `h11`/`httptools` mean this too); `2`:"
            " HTTP/2 only"
        ),
    ),
    Option(
        "h2_max_concurrent_streams",
        100,
        "Most HTTP/2 streams a client may have open at once on one connection.",
        integer(1, 2**32 - 1),
        group="http2",
        section="protocols",
        doc="most HTTP/2 streams one connection may have open at once",
    ),
    Option(
        "h2_max_reset_streams",
        20,
        "Most HTTP/2 streams a client may open and reset before they are served (rapid reset).",
        POSITIVE,
        group="http2",
        section="protocols",
        doc=(
            "most streams a client may open and reset before they are served; more ends the"
            " connection with GOAWAY (rapid reset, CVE-2023-44487)"
        ),
    ),
    Option(
        "ssl_certfile",
        None,
        "Serve TLS with this PEM certificate (chain).",
        metavar="PATH",
        section="protocols",
        doc="serve TLS (rustls) with this PEM certificate chain",
    ),
    Option(
        "ssl_keyfile",
        None,
        "The PEM private key (default: read from --ssl-certfile).",
        metavar="PATH",
        section="protocols",
        doc_default="the certfile",
        doc="PEM private key (PKCS#8, PKCS#1 or SEC1)",
    ),
    Option(
        "ssl_keyfile_password",
        None,
        "Password of an encrypted key file.",
        metavar="TEXT",
        section="protocols",
        doc="password of an encrypted key (needs the `cryptography` package)",
    ),
    Option(
        "ssl_ca_certs",
        None,
        "PEM CA certificates that client certificates are checked against.",
        metavar="PATH",
        section="protocols",
        doc="CA certificates that client certificates must chain to",
    ),
    Option(
        "ssl_cert_reqs",
        0,
        "Client certificates: 0 not asked for, 1 optional, 2 required.",
        integer(0, 2),
        section="protocols",
        doc="client certificates: `0` not asked for, `1` optional, `2` required",
    ),
    Option(
        "ssl_ciphers",
        "TLSv1",
        "Cipher suites, rustls names separated by ':' ('TLSv1': all that rustls offers).",
        section="protocols",
        doc=(
            "rustls cipher suite names separated by `:` (e.g. `TLS13_AES_256_GCM_SHA384`);"
            " `TLSv1` means all that rustls offers (TLS 1.2 and 1.3)"
        ),
    ),
    Option(
        "ws",
        "auto",
        "WebSocket support for ASGI apps ('none' serves upgrade requests as plain HTTP).",
        one_of(*WS_CHOICES),
        group="websocket",
        section="protocols",
        doc=(
            "`auto` serves WebSockets to ASGI apps; `none` serves upgrade requests as plain HTTP"
            " (`websockets` and `wsproto`, Uvicorn's names, mean `auto`)"
        ),
    ),
    Option(
        "ws_max_size",
        16 * 1024 * 1024,
        "Largest WebSocket message accepted; a larger one closes the connection with 1009.",
        POSITIVE,
        metavar="BYTES",
        group="websocket",
        section="protocols",
        doc="largest message, whole after reassembly and inflation; larger closes with 1009",
    ),
    Option(
        "ws_max_queue",
        32,
        "WebSocket messages held for the app before the socket stops being read.",
        POSITIVE,
        group="websocket",
        section="protocols",
        doc="messages held for the app before the socket stops being read",
    ),
    Option(
        "ws_ping_interval",
        20.0,
        "Send a WebSocket ping this often (0 turns pings off).",
        seconds,
        metavar="SECONDS",
        group="websocket",
        section="protocols",
        doc="seconds between pings; `0` sends none",
    ),
    Option(
        "ws_ping_timeout",
        20.0,
        "Drop a WebSocket peer that does not answer a ping within this (0: wait forever).",
        seconds,
        metavar="SECONDS",
        group="websocket",
        section="protocols",
        doc=(
            "a peer that answers no ping within this is dropped (the app gets"
            " `websocket.disconnect` with 1006); while the app is behind and reading is paused,"
            " the clock waits too"
        ),
    ),
    Option(
        "ws_per_message_deflate",
        True,
        "Offer WebSocket permessage-deflate compression to clients that ask for it.",
        kind="bool",
        group="websocket",
        section="protocols",
        doc="accept permessage-deflate compression when the client offers it",
    ),
    Option(
        "static_path_route",
        None,
        "Serve the files of --static-path-mount under this URL prefix, without the app.",
        url_path,
        metavar="PATH",
        group="responses",
        doc=(
            "serve the files of `--static-path-mount` under this URL prefix, from Rust, without"
            " calling the app"
        ),
    ),
    Option(
        "static_path_mount",
        None,
        "The directory --static-path-route serves.",
        metavar="DIR",
        group="responses",
        doc="the directory `--static-path-route` serves",
    ),
    Option(
        "server_header",
        True,
        "Send a 'server: juggler' header.",
        kind="bool",
        group="responses",
        doc="send `server: juggler` on every response",
    ),
    Option(
        "date_header",
        True,
        "Send a 'date' header.",
        kind="bool",
        group="responses",
        doc="send `date` on every response",
    ),
)

BY_NAME = {o.name: o for o in OPTIONS}
assert not set(GROUPS) & set(BY_NAME), "a group may not share an option's name"
#: One frozen class per group, its fields the group's options under their own names.
_GROUP_TYPES = {
    group: dataclasses.make_dataclass(
        group.title(), [o.name for o in OPTIONS if o.group == group], frozen=True
    )
    for group in GROUPS
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved options of one juggler run: each by its name (``config.port``), and each
    group the Rust core reads as an object (``config.limits.limit_request_body``)."""

    app: Any
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name in BY_NAME:
            return self.values[name]
        group = _GROUP_TYPES.get(name)
        if group is None:
            raise AttributeError(name)
        return group(**{f.name: self.values[f.name] for f in dataclasses.fields(group)})

    @classmethod
    def resolve(
        cls,
        app: Any,
        explicit: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        source: str = "command line",
    ) -> Config:
        env = os.environ if env is None else env
        unknown = sorted(set(explicit) - set(BY_NAME))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}")
        file_path = explicit.get("config") or env.get(BY_NAME["config"].env)
        from_file: dict[str, Any] = {}
        if file_path:
            from . import config_file

            from_file = config_file.read(str(file_path))
        values: dict[str, Any] = {}
        for option in OPTIONS:
            if explicit.get(option.name) is not None:
                values[option.name] = option.convert(explicit[option.name], source)
            elif option.env in env:
                values[option.name] = option.convert(env[option.env], option.env)
            elif option.name == "workers" and env.get("WEB_CONCURRENCY"):
                # The variable PaaS platforms set, which Uvicorn and Gunicorn read too.
                values[option.name] = option.convert(env["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
            elif option.name == "forwarded_allow_ips" and env.get("FORWARDED_ALLOW_IPS"):
                # Uvicorn's and Gunicorn's variable for the same setting.
                values[option.name] = env["FORWARDED_ALLOW_IPS"]
            elif option.name in from_file:
                values[option.name] = option.convert(from_file[option.name], str(file_path))
            else:
                values[option.name] = option.default
        if app is None:
            app = env.get(ENV_PREFIX + "APP") or from_file.get("app")
        if app is None or app == "":
            raise ConfigError("no application given: pass APP as 'module:attribute'")
        if values["uds"] and values["fd"] is not None:
            raise ConfigError("--uds and --fd cannot be used together")
        if values["reuse_port"] and (values["uds"] or values["fd"] is not None):
            raise ConfigError("--reuse-port needs a TCP --host/--port, not --uds or --fd")
        return cls(app=app, values=values)
