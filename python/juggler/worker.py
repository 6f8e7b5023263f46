"""One worker: an asyncio event loop running the app, a Rust server doing the socket I/O.

It runs in a process the supervisor forked (``children.py``) and reports to it over a pipe.
"""

from __future__ import annotations

import asyncio
import collections.abc
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from . import _juggler, tls
from . import logging as jlogging
from .channel import LEAVE_SIGNAL, WorkerChannel, beat_interval
from .config import Config
from .exit_codes import EXIT_OK, EXIT_STARTUP_FAILED
from .lifespan import Lifespan, LifespanFailed
from .logging import access_logger, error_logger
from .wsgi import ErrorStream

#: After the graceful timeout, how long apps that were told of the disconnect may take to end
#: by themselves before they are cancelled.
DISCONNECT_GRACE = 1.0

#: SIGTERM stops gracefully, SIGQUIT at once. SIGINT belongs to the supervisor: Ctrl+C reaches
#: every process of the terminal's group, and the supervisor turns it into SIGTERM or SIGQUIT.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT)

# Each request runs as a RunApp (implemented in Rust); create_task accepts only coroutines.
collections.abc.Coroutine.register(_juggler.RunApp)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError(
                    "--loop uvloop was asked for, but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Worker:
    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        app: Any,
        interface: str,
        channel: WorkerChannel,
        max_requests: int | None = None,
        load_slot: tuple[_juggler.LoadSlots, int] | None = None,
        metrics_slot: tuple[_juggler.Metrics, int] | None = None,
        on_exit: Callable[[], None] | None = None,
        more_socks: collections.abc.Sequence[socket.socket] = (),
    ) -> None:
        self.config = config
        self.sock = sock
        #: Further listening sockets served alike (systemd's socket activation).
        self.more_socks = more_socks
        self.app = app
        self.interface = interface
        #: The pipe to the supervisor: readiness, heartbeats, recycle requests.
        self.channel = channel
        #: This worker's own --max-requests, jitter included.
        self.max_requests = max_requests
        #: The shared connection counts of the workers, and this worker's place in them.
        self.load_slot = load_slot
        #: The shared metrics (--metrics-bind), and this worker's slot in them.
        self.metrics_slot = metrics_slot
        #: Called once the worker has drained and its event loop is closed (--worker-exit).
        self.on_exit = on_exit
        self._recycle_asked = False

        #: WSGI calls were still running when the worker stopped: threads cannot be cancelled,
        #: so the process must end without waiting for them.
        self.abandoned_calls = 0
        self._stop: asyncio.Event | None = None
        self._force = False
        #: Tasks of juggler's own (lifespan, shutdown helpers) that draining must not wait for.
        self._internal: set[asyncio.Future[Any]] = set()

    def run(self) -> int:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(self.config.loop)) as runner:
            code = runner.run(self.serve())
        if self.on_exit is not None:
            self.on_exit()
        if self.abandoned_calls:
            # Interpreter shutdown would stop those threads mid-call in undefined ways;
            # leave now, as a killed worker would, with the logs flushed.
            logging.shutdown()
            os._exit(code)
        return code

    def _make_server(
        self, loop: asyncio.AbstractEventLoop, state: dict[str, Any] | None
    ) -> _juggler.Server:
        config = self.config
        iface: _juggler.AsgiInterface | _juggler.WsgiInterface
        if self.interface == "wsgi":
            iface = _juggler.WsgiInterface(
                self.app,
                loop,
                error_logger,
                access_logger,
                ErrorStream(),
                config.wsgi,
            )
        else:
            iface = _juggler.AsgiInterface(self.app, loop, state, error_logger, access_logger)
        return iface.server(
            # WSGI apps run on threads: no WebSockets, and the loop's watchdog and lag bound
            # do not concern them.
            _juggler.CoreConfig(
                config,
                max_requests=self.max_requests,
                websockets=self.interface != "wsgi",
                event_loop=self.interface != "wsgi",
                access_direct=jlogging.access_is_direct(),
            ),
            self.sock.fileno(),
            self.sock.family == socket.AF_UNIX,
            tls=tls.settings(config),
            load_slot=self.load_slot,
            metrics_slot=self.metrics_slot,
            heartbeat=(
                (beat_interval(config.timeout_worker), self._beat)
                if config.timeout_worker > 0
                else None
            ),
            on_request_limit=self._request_limit_reached if self.max_requests else None,
            own_socket=bool(config.reuse_port),
            more_listeners=[(s.fileno(), s.family == socket.AF_UNIX) for s in self.more_socks],
        )

    def _leave(self, server: _juggler.Server) -> None:
        # Said once per worker: the supervisor logs the delay itself.
        error_logger.debug("Worker [%d] fails its health checks from now on", os.getpid())
        server.leave()

    def _on_signal(self, signame: str) -> None:
        assert self._stop is not None
        if signame == "SIGQUIT":
            # Stop waiting for in-flight requests. A repeated SIGTERM changes nothing: the
            # supervisor, or systemd signalling the whole group, may send it twice.
            self._force = True
            error_logger.info("Received %s: cancelling in-flight requests.", signame)
        self._stop.set()

    def _beat(self, server: _juggler.Server) -> None:
        self.channel.beat(server.longest_call())
        if self._recycle_asked:
            # Again, in case the first one was lost: the supervisor acts on it once.
            self.channel.recycle(server.requests)

    def _request_limit_reached(self, server: _juggler.Server) -> None:
        self._recycle_asked = True
        error_logger.info(
            "Worker [%d] has taken %d requests (--max-requests); asking to be replaced.",
            os.getpid(),
            server.requests,
        )
        self.channel.recycle(server.requests)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # WSGI has no lifespan protocol.
        lifespan_mode = "off" if self.interface == "wsgi" else self.config.lifespan
        lifespan = Lifespan(self.app, lifespan_mode)
        try:
            await lifespan.startup()
            if lifespan.task is not None:
                self._internal.add(lifespan.task)
        except LifespanFailed as exc:
            error_logger.error("Application startup failed: %s", exc)
            error_logger.error("Exiting.")
            return EXIT_STARTUP_FAILED

        server = self._make_server(loop, lifespan.state if lifespan_mode != "off" else None)
        loop.add_reader(server.fileno(), server.process)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig.name)
        loop.add_signal_handler(LEAVE_SIGNAL, self._leave, server)
        server.start()
        # The server holds its own duplicate. Closing this one now means that when the server
        # stops accepting, the worker holds the socket no more: with --reuse-port the kernel
        # then stops sending it connections that nobody would accept.
        self.sock.close()
        self.channel.ready()
        try:
            await self._stop.wait()
            await self._drain(server)
        finally:
            for sig in (*STOP_SIGNALS, LEAVE_SIGNAL):
                loop.remove_signal_handler(sig)
            # The stop is under way: a second SIGTERM (from the supervisor after systemd's
            # own, which reaches every process of the service) must not kill the worker in
            # the middle of the app's lifespan shutdown, as the default action would.
            # SIGQUIT keeps its default: at once means at once.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            server.abort()
            server.join()
            server.process()
            loop.remove_reader(server.fileno())
            self.abandoned_calls = server.running_calls
            if self.abandoned_calls:
                error_logger.warning(
                    "%d WSGI call(s) still running after the graceful timeout; exiting anyway.",
                    self.abandoned_calls,
                )
        try:
            await lifespan.shutdown()
        except LifespanFailed as exc:
            error_logger.error("Application shutdown failed: %s", exc)
            return EXIT_STARTUP_FAILED
        return EXIT_OK

    async def _drain(self, server: _juggler.Server) -> None:
        """Stops accepting, then waits for open requests up to the graceful timeout."""
        server.shutdown()
        # Logged once the server drains (health checks answer 503 from here on).
        error_logger.info("Shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_graceful_shutdown
        forced = loop.create_task(self._wait_forced())
        self._internal.add(forced)
        try:
            await asyncio.wait(
                {server.wait_drained(), forced},
                timeout=self.config.timeout_graceful_shutdown,
                return_when=asyncio.FIRST_COMPLETED,
            )
            # Responses are out, but an app may still be running background work.
            while (pending := self._app_tasks()) and not self._force:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    pending | {forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            forced.cancel()
        pending = self._app_tasks()
        if pending or server.connections or server.running_calls:
            error_logger.warning(
                "Graceful shutdown timed out: closing %d connection(s), cancelling %d task(s).",
                server.connections,
                len(pending),
            )
            # Every open request gets http.disconnect, so that streaming handlers (SSE, long
            # downloads) end by themselves and run their clean-up; only those that do not,
            # within a short grace, are cancelled.
            server.abort()
            if pending:
                _, pending = await asyncio.wait(pending, timeout=DISCONNECT_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def _wait_forced(self) -> None:
        # The stop event is already set; a second signal sets _force and the event again.
        assert self._stop is not None
        while not self._force:
            self._stop.clear()
            await self._stop.wait()

    def _app_tasks(self) -> set[asyncio.Task[Any]]:
        current = asyncio.current_task()
        return {
            t
            for t in asyncio.all_tasks()
            if t is not current and not t.done() and t not in self._internal
        }
