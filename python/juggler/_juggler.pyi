"""Type stubs for juggler's Rust core (checked against it with mypy's stubtest)."""

from collections.abc import Callable
from typing import Any, final

__all__ = [
    "AsgiInterface",
    "ClientDisconnected",
    "ConfigError",
    "CoreConfig",
    "Done",
    "FileWrapper",
    "LoadSlots",
    "Metrics",
    "ProtocolError",
    "Ready",
    "RunApp",
    "Server",
    "TlsSettings",
    "WsgiInterface",
    "__version__",
    "close_gate",
]
__version__: str

class ClientDisconnected(OSError):
    """The client went away before the response was sent."""

class ConfigError(ValueError):
    """An option has a value juggler cannot use; the message names its flag
    (--limit-request-body)."""

class ProtocolError(RuntimeError):
    """The app broke its interface's protocol (an ASGI message out of order or of a wrong
    shape, start_response called twice, a malformed status or header)."""

@final
class CoreConfig:
    """The core's frozen settings, read from ``options`` (juggler's ``Config``) group by group:
    ``options.limits``, ``.timeouts``, ``.http2``, ``.websocket``, ``.access``, ``.responses``
    and ``.proxy``, each an object with the options as attributes."""

    def __new__(
        cls,
        options: Any,
        *,
        max_requests: int | None = None,
        websockets: bool = True,
        event_loop: bool = True,
        access_direct: bool = False,
    ) -> CoreConfig: ...

@final
class TlsSettings:
    """A checked rustls configuration, from the ``--ssl-*`` options."""

    def __new__(
        cls,
        *,
        certfile: str,
        keyfile: str | None = None,
        key_pem: bytes | None = None,
        ca_certs: str | None = None,
        cert_reqs: int = 0,
        ciphers: str | None = None,
        http1: bool = True,
        http2: bool = True,
    ) -> TlsSettings: ...

@final
class LoadSlots:
    """Shared memory where sibling workers publish their open connection counts."""

    def __new__(cls, capacity: int) -> LoadSlots: ...
    def __len__(self) -> int: ...
    def get(self, index: int) -> int | None: ...
    def clear(self, index: int) -> None: ...

@final
class Metrics:
    """Shared memory where workers count what --metrics-bind serves, a slot each."""

    def __new__(cls, slots: int) -> Metrics: ...
    def __len__(self) -> int: ...
    def clear(self, slot: int) -> None: ...
    def requests(self) -> int:
        """Requests answered so far by every worker, those gone included."""
    def render(
        self,
        workers: list[tuple[int, int]],
        restarts: list[tuple[str, int]],
        openmetrics: bool,
    ) -> tuple[str, str]: ...

@final
class Server:
    """One worker's I/O thread serving one interface; made whole by an interface's
    ``server()``, whose callbacks (``heartbeat``, ``on_request_limit``) it calls on the loop
    thread with itself as the argument."""

    def fileno(self) -> int: ...
    def start(self) -> None: ...
    def process(self) -> None: ...
    def leave(self) -> None:
        """Health checks answer 503 from now on, while everything else is served as before."""
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...
    def wait_drained(self) -> Any: ...
    def join(self) -> None: ...
    def longest_call(self) -> tuple[float, str] | None: ...
    @property
    def requests(self) -> int: ...
    @property
    def connections(self) -> int: ...
    @property
    def inflight(self) -> int: ...
    @property
    def running_calls(self) -> int: ...
    @property
    def loop_lag(self) -> float: ...

@final
class AsgiInterface:
    def __new__(
        cls,
        app: Callable[..., Any],
        event_loop: Any,
        state: dict[str, Any] | None,
        error_logger: Any,
        access_logger: Any,
    ) -> AsgiInterface: ...
    def server(
        self,
        config: CoreConfig,
        fd: int,
        unix: bool,
        *,
        tls: TlsSettings | None = None,
        load_slot: tuple[LoadSlots, int] | None = None,
        metrics_slot: tuple[Metrics, int] | None = None,
        heartbeat: tuple[float, Callable[[Server], object]] | None = None,
        on_request_limit: Callable[[Server], object] | None = None,
        own_socket: bool = False,
        more_listeners: list[tuple[int, bool]] = ...,
    ) -> Server: ...

@final
class WsgiInterface:
    def __new__(
        cls,
        app: Callable[..., Any],
        event_loop: Any,
        error_logger: Any,
        access_logger: Any,
        errors: Any,
        pool: Any,
    ) -> WsgiInterface: ...
    def server(
        self,
        config: CoreConfig,
        fd: int,
        unix: bool,
        *,
        tls: TlsSettings | None = None,
        load_slot: tuple[LoadSlots, int] | None = None,
        metrics_slot: tuple[Metrics, int] | None = None,
        heartbeat: tuple[float, Callable[[Server], object]] | None = None,
        on_request_limit: Callable[[Server], object] | None = None,
        own_socket: bool = False,
        more_listeners: list[tuple[int, bool]] = ...,
    ) -> Server: ...

@final
class FileWrapper:
    """``wsgi.file_wrapper``: juggler sends a regular file's bytes without Python reading them."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> FileWrapper: ...
    @property
    def filelike(self) -> Any: ...
    @property
    def blksize(self) -> int: ...
    def __iter__(self) -> FileWrapper: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

@final
class Ready:
    def __await__(self) -> Ready: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, exc: Any, *args: Any) -> None: ...
    def close(self) -> None: ...

@final
class Done:
    def __await__(self) -> Done: ...
    def __iter__(self) -> Done: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, exc: Any, *args: Any) -> None: ...
    def close(self) -> None: ...

@final
class RunApp:
    """One request's coroutine: drives the app's coroutine, then settles the response."""

    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> RunApp: ...
    def __iter__(self) -> RunApp: ...

def close_gate(fd: int) -> None:
    """Closes the gate of the listening socket ``fd``: the kernel completes no new handshake on
    it, and the workers sharing it serve what is queued before they stop."""
