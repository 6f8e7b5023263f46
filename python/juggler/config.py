"""Every option juggler has, declared once.

The declarations drive the command line (``cli.py``), ``juggler.run(**options)`` and the
``JUGGLER_*`` environment variables, so the three always agree. Precedence: explicit
arguments, then environment variables, then defaults.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "JUGGLER_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOOPS = ("auto", "asyncio", "uvloop")
LIFESPANS = ("auto", "on", "off")
INTERFACES = ("auto", "asgi", "wsgi")
HTTP_CHOICES = ("auto", "1", "2", "h11", "httptools")
#: "websockets" and "wsproto" are Uvicorn's names; juggler has one implementation, in Rust.
WS_CHOICES = ("auto", "none", "websockets", "wsproto")


class ConfigError(ValueError):
    """An option has a value juggler cannot use; the message names the option."""


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    #: "value" takes an argument, "bool" is a --x/--no-x pair, "flag" is a plain switch,
    #: "multi" may be repeated.
    kind: str = "value"
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be a non-negative number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _cert_reqs(text: str) -> int:
    value = int(text)
    if value not in (0, 1, 2):
        raise ValueError("must be 0 (none), 1 (optional) or 2 (required)")
    return value


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (every IPv4 interface) as (host, port);
    ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("must look like HOST:PORT")
    if not host:
        return "0.0.0.0", _port(port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be in brackets: [ADDRESS]:PORT")
    return host, _port(port)


def _host_port(text: str) -> str:
    split_host_port(text)
    return text


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError("must look like NAME:VALUE")
    return name.strip(), value.strip()


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        None,
        "Read options from this TOML file (same names as the flags; flags and environment "
        "variables win).",
        metavar="FILE",
    ),
    Option("host", "127.0.0.1", "Bind socket to this host.", metavar="HOST"),
    Option("port", 8000, "Bind socket to this port (0 picks a free one).", _port, metavar="PORT"),
    Option("uds", None, "Bind to a UNIX domain socket at this path.", metavar="PATH"),
    Option("fd", None, "Serve on an already bound socket with this file descriptor.", int),
    Option("backlog", 2048, "Maximum number of connections waiting to be accepted.", _positive_int),
    Option("root_path", "", "Set the ASGI 'root_path' for apps mounted below a URL prefix."),
    Option(
        "interface",
        "auto",
        "Which interface the app speaks: auto, asgi or wsgi; auto tells a WSGI callable from an"
        " ASGI one.",
        choices=INTERFACES,
    ),
    Option(
        "threads",
        32,
        "WSGI: most threads running the app at once (started on demand, idle ones retire after"
        " 60 s).",
        _positive_int,
        metavar="N",
    ),
    Option(
        "queue_size",
        None,
        "WSGI: requests that may wait for a free thread; beyond this they get 503."
        " [default: 4 x threads]",
        _positive_int,
        metavar="N",
    ),
    Option(
        "timeout_write",
        60.0,
        "WSGI: how long a thread waits for a slow client to take more of the response before the"
        " connection is closed.",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "workers",
        1,
        "Number of worker processes, each with its own event loop (also read from"
        " WEB_CONCURRENCY).",
        _positive_int,
        metavar="N",
    ),
    Option(
        "reuse_port",
        False,
        "Each worker binds its own socket with SO_REUSEPORT, and the kernel spreads connections"
        " between them.",
        kind="flag",
    ),
    Option(
        "preload",
        False,
        "Import the app in the supervisor before starting the workers (they share its memory;"
        " SIGHUP then restarts workers without new code).",
        kind="flag",
    ),
    Option(
        "timeout_worker",
        30.0,
        "Kill and replace a worker whose event loop has not turned, or recycle one whose WSGI"
        " call has made no progress, for this long (0 turns the check off).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "loop_watchdog",
        None,
        "ASGI: when the event loop has not turned for this long, log the request it is running,"
        " for how long, and the Python stack down to the blocking line (off by default).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "max_loop_lag",
        None,
        "ASGI: answer new requests 503 with Retry-After while the event loop lags this many"
        " milliseconds or more, instead of queueing them behind it (off by default).",
        _non_negative,
        metavar="MS",
    ),
    Option(
        "max_requests",
        None,
        "Replace a worker gracefully after it has taken about this many requests.",
        _positive_int,
        metavar="N",
    ),
    Option(
        "max_requests_jitter",
        0,
        "Add a random 0..N to each worker's --max-requests, so workers do not restart together.",
        _non_negative_int,
        metavar="N",
    ),
    Option(
        "reload",
        False,
        "Restart the workers when a watched file changes (for development; needs watchfiles).",
        kind="flag",
    ),
    Option(
        "reload_dir",
        (),
        "Directory to watch with --reload; repeat for more. [default: --app-dir]",
        kind="multi",
        metavar="DIR",
    ),
    Option(
        "reload_include",
        (),
        "Glob of more files whose changes reload, besides *.py; repeat for more.",
        kind="multi",
        metavar="GLOB",
    ),
    Option(
        "reload_exclude",
        (),
        "Glob of files whose changes never reload, besides .*, *.py[cod], *~ and .*.sw?;"
        " repeat for more.",
        kind="multi",
        metavar="GLOB",
    ),
    Option("pid", None, "Write the supervisor's process id to this file.", metavar="FILE"),
    Option("lifespan", "auto", "Lifespan protocol handling.", choices=LIFESPANS),
    Option("log_level", "info", "Log level.", choices=LOG_LEVELS),
    Option("access_log", True, "Write an access log line per request.", kind="bool"),
    Option(
        "access_log_format",
        None,
        "Access log line in Gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(D)s'.",
        metavar="FORMAT",
    ),
    Option(
        "access_log_json",
        False,
        "Write the access log as one JSON object per line.",
        kind="bool",
    ),
    Option(
        "log_config",
        None,
        "Configure logging from this file: dictConfig JSON or YAML (.json, .yaml, .yml), "
        "else logging's ini format.",
        metavar="FILE",
    ),
    Option(
        "timeout_keep_alive",
        5.0,
        "Close idle keep-alive connections after this many seconds (0 turns keep-alive off).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "timeout_graceful_shutdown",
        30.0,
        "On shutdown, wait this long for in-flight requests before cancelling them.",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "limit_concurrency",
        None,
        "Answer 503 once this many requests are in flight.",
        _positive_int,
    ),
    Option(
        "max_header_size",
        65536,
        "Largest request head (request line and headers) in bytes; larger ones get 431.",
        _positive_int,
        metavar="BYTES",
    ),
    Option(
        "limit_request_body",
        0,
        "Largest request body in bytes (0: no limit); a larger one gets 413: at once when its"
        " Content-Length says so, otherwise when the body reaches the limit.",
        _non_negative_int,
        metavar="BYTES",
    ),
    Option(
        "limit_request_line",
        0,
        "Largest request line (method, target and version) in bytes (0: only --max-header-size"
        " bounds it); a longer one gets 414.",
        _non_negative_int,
        metavar="BYTES",
    ),
    Option(
        "limit_request_fields",
        100,
        "Most header fields in a request (0: as many as --max-header-size allows); more get 431.",
        _non_negative_int,
        metavar="N",
    ),
    Option(
        "limit_request_field_size",
        0,
        "Largest header field (name, value and separator) in bytes (0: only --max-header-size"
        " bounds it); a larger one gets 431.",
        _non_negative_int,
        metavar="BYTES",
    ),
    Option(
        "timeout_request_head",
        0.0,
        "Close a connection whose request head has not fully arrived this many seconds after its"
        " first byte (0: the head only has to arrive within --timeout-keep-alive of the"
        " connection going idle).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "timeout_request",
        0.0,
        "Answer 504 when the app has not started its response after this many seconds, and cancel"
        " the ASGI task (a WSGI thread cannot be stopped: its response is dropped and logged)."
        " 0 turns it off.",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "health_path",
        None,
        "Answer GET/HEAD requests for this path in the server itself, without calling the app:"
        " 200 while serving, 503 once shutting down.",
        metavar="PATH",
    ),
    Option(
        "metrics_bind",
        None,
        "Serve Prometheus metrics of all workers (requests, statuses, durations, connections,"
        " bytes, loop lag, WSGI threads, worker restarts) at http://HOST:PORT/metrics, from the"
        " supervisor. Off by default.",
        _host_port,
        metavar="HOST:PORT",
    ),
    Option(
        "proxy_headers",
        True,
        "Take the client address, scheme and host from X-Forwarded-For/Proto/Host/Port or"
        " Forwarded, when the peer is in --forwarded-allow-ips.",
        kind="bool",
    ),
    Option(
        "forwarded_allow_ips",
        None,
        "Comma-separated peers trusted with proxy headers: IP addresses, networks (10.0.0.0/8),"
        " '*' for all, 'unix:' for peers on a UNIX socket (also read from FORWARDED_ALLOW_IPS)."
        " [default: 127.0.0.1]",
        metavar="LIST",
    ),
    Option("factory", False, "Treat APP as a factory: call it with no arguments.", kind="flag"),
    Option("app_dir", ".", "Look for APP in this directory (added to sys.path).", metavar="DIR"),
    Option("loop", "auto", "Event loop implementation.", choices=LOOPS),
    Option(
        "header",
        (),
        "Add a header to every response; repeat for more.",
        _header,
        kind="multi",
        metavar="NAME:VALUE",
    ),
    Option(
        "http",
        "auto",
        "HTTP versions: 'auto' serves HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or by ALPN "
        "over TLS), '1' only HTTP/1.1, '2' only HTTP/2 ('h11' and 'httptools' mean '1').",
        choices=HTTP_CHOICES,
    ),
    Option(
        "h2_max_concurrent_streams",
        100,
        "Most HTTP/2 streams a client may have open at once on one connection.",
        _positive_int,
    ),
    Option(
        "h2_max_reset_streams",
        20,
        "Most HTTP/2 streams a client may open and reset before they are served (rapid reset).",
        _positive_int,
    ),
    Option("ssl_certfile", None, "Serve TLS with this PEM certificate (chain).", metavar="PATH"),
    Option(
        "ssl_keyfile",
        None,
        "The PEM private key (default: read from --ssl-certfile).",
        metavar="PATH",
    ),
    Option("ssl_keyfile_password", None, "Password of an encrypted key file.", metavar="TEXT"),
    Option(
        "ssl_ca_certs",
        None,
        "PEM CA certificates that client certificates are checked against.",
        metavar="PATH",
    ),
    Option(
        "ssl_cert_reqs",
        0,
        "Client certificates: 0 not asked for, 1 optional, 2 required.",
        _cert_reqs,
    ),
    Option(
        "ssl_ciphers",
        "TLSv1",
        "Cipher suites, rustls names separated by ':' ('TLSv1': all that rustls offers).",
    ),
    Option(
        "ws",
        "auto",
        "WebSocket support for ASGI apps ('none' serves upgrade requests as plain HTTP).",
        choices=WS_CHOICES,
    ),
    Option(
        "ws_max_size",
        16 * 1024 * 1024,
        "Largest WebSocket message accepted; a larger one closes the connection with 1009.",
        _positive_int,
        metavar="BYTES",
    ),
    Option(
        "ws_max_queue",
        32,
        "WebSocket messages held for the app before the socket stops being read.",
        _positive_int,
    ),
    Option(
        "ws_ping_interval",
        20.0,
        "Send a WebSocket ping this often (0 turns pings off).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "ws_ping_timeout",
        20.0,
        "Drop a WebSocket peer that does not answer a ping within this (0: wait forever).",
        _non_negative,
        metavar="SECONDS",
    ),
    Option(
        "ws_per_message_deflate",
        True,
        "Offer WebSocket permessage-deflate compression to clients that ask for it.",
        kind="bool",
    ),
    Option(
        "static_path_route",
        None,
        "Serve the files of --static-path-mount under this URL prefix, without the app.",
        metavar="PATH",
    ),
    Option(
        "static_path_mount",
        None,
        "The directory --static-path-route serves.",
        metavar="DIR",
    ),
    Option("server_header", True, "Send a 'server: juggler' header.", kind="bool"),
    Option("date_header", True, "Send a 'date' header.", kind="bool"),
)

BY_NAME = {o.name: o for o in OPTIONS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(option: Option, value: Any, source: str) -> Any:
    """Turns a value from the CLI, the environment or run() into the option's type."""
    where = f"{option.flag} (from {source})" if source != "command line" else option.flag
    if value is None:
        return None
    try:
        if option.kind in ("bool", "flag"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("must be true or false")
        if option.kind == "multi":
            if isinstance(value, str):
                items = [v for v in value.split(",") if v.strip()]
            else:
                items = list(value)
            return tuple(option.type(v) if isinstance(v, str) else _pair(v) for v in items)
        if option.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            # A TOML number for a text option (http = 2).
            value = str(value)
        if isinstance(value, str):
            value = option.type(value)
        elif option.type in (
            int,
            _port,
            _positive_int,
            _non_negative_int,
            _cert_reqs,
        ) and not isinstance(value, int):
            raise ValueError("must be an integer")
        elif option.type is _non_negative:
            value = _non_negative(str(value))
        elif option.type in (_port, _positive_int, _non_negative_int, _cert_reqs):
            value = option.type(str(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value {value!r} for {where}: {exc}") from None
    if option.choices and value not in option.choices:
        choices = ", ".join(option.choices)
        raise ConfigError(f"invalid value {value!r} for {where}: choose from {choices}")
    return value


def _pair(value: Any) -> tuple[str, str]:
    name, val = value
    return str(name), str(val)


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved options of one juggler run."""

    app: Any
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

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
                values[option.name] = _convert(option, explicit[option.name], source)
            elif option.env in env:
                values[option.name] = _convert(option, env[option.env], option.env)
            elif option.name == "workers" and env.get("WEB_CONCURRENCY"):
                # The variable PaaS platforms set, which Uvicorn and Gunicorn read too.
                values[option.name] = _convert(option, env["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
            elif option.name == "forwarded_allow_ips" and env.get("FORWARDED_ALLOW_IPS"):
                # Uvicorn's and Gunicorn's variable for the same setting.
                values[option.name] = env["FORWARDED_ALLOW_IPS"]
            elif option.name in from_file:
                values[option.name] = _convert(option, from_file[option.name], str(file_path))
            else:
                values[option.name] = option.default
        if app is None:
            app = env.get(ENV_PREFIX + "APP") or from_file.get("app")
        if app is None or app == "":
            raise ConfigError("no application given: pass APP as 'module:attribute'")
        if values["uds"] and values["fd"] is not None:
            raise ConfigError("--uds and --fd cannot be used together")
        if values["health_path"] is not None and not str(values["health_path"]).startswith("/"):
            raise ConfigError(
                f"invalid value {values['health_path']!r} for --health-path: must start with '/'"
            )
        if values["reuse_port"] and (values["uds"] or values["fd"] is not None):
            raise ConfigError("--reuse-port needs a TCP --host/--port, not --uds or --fd")
        return cls(app=app, values=values)

    @property
    def effective_queue_size(self) -> int:
        """How many WSGI requests may wait for a thread: ``queue_size``, or 4 x ``threads``."""
        if self.queue_size is None:
            return 4 * int(self.threads)
        return int(self.queue_size)

    def core_options(
        self, max_requests: int | None = None, websockets: bool = True, event_loop: bool = True
    ) -> dict[str, Any]:
        """The keyword arguments of the Rust ``CoreConfig`` (``max_requests`` is per worker,
        with its jitter; ``websockets`` is False for interfaces without them, WSGI;
        ``event_loop`` is False for interfaces whose app does not run on the event loop, WSGI,
        which the loop's watchdog and lag bound do not concern)."""
        headers = list(self.header)
        if self.server_header:
            headers.insert(0, ("server", "juggler"))
        return {
            "keep_alive_timeout": float(self.timeout_keep_alive),
            "limit_concurrency": self.limit_concurrency,
            "max_header_size": self.max_header_size,
            "date_header": self.date_header,
            "default_headers": headers,
            "root_path": self.root_path,
            "access_log": self.access_log,
            "max_requests": max_requests,
            "static_path_route": self.static_path_route,
            "static_path_mount": self.static_path_mount,
            "access_log_format": self.access_log_format,
            "access_log_json": self.access_log_json,
            "http": self.http,
            "h2_max_concurrent_streams": self.h2_max_concurrent_streams,
            "h2_max_reset_streams": self.h2_max_reset_streams,
            "limit_request_body": self.limit_request_body or None,
            "limit_request_line": self.limit_request_line or None,
            "limit_request_fields": self.limit_request_fields or None,
            "limit_request_field_size": self.limit_request_field_size or None,
            "timeout_request_head": float(self.timeout_request_head),
            "timeout_request": float(self.timeout_request),
            "health_path": self.health_path,
            "forwarded_allow_ips": (
                [self.forwarded_allow_ips or "127.0.0.1"] if self.proxy_headers else []
            ),
            "loop_watchdog": float(self.loop_watchdog or 0) if event_loop else None,
            "max_loop_lag": float(self.max_loop_lag or 0) / 1000 if event_loop else None,
            "ws": (
                (
                    self.ws_max_size,
                    self.ws_max_queue,
                    float(self.ws_ping_interval),
                    float(self.ws_ping_timeout),
                    self.ws_per_message_deflate,
                )
                if websockets and self.ws != "none"
                else None
            ),
        }
