"""The ASGI lifespan protocol: startup before the first request, shutdown after the last."""

from __future__ import annotations

import asyncio
from typing import Any

from .logging import error_logger as logger


class LifespanFailed(Exception):
    """Startup or shutdown failed; the message is the app's own when it gave one."""


class Lifespan:
    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        #: Shared with every request as a shallow copy in ``scope["state"]``.
        self.state: dict[str, Any] = {}
        self._receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._unsupported = False
        self._started = False

    async def startup(self) -> None:
        if self.mode == "off":
            return
        logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self._receive_queue.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._failure is not None:
            raise LifespanFailed(self._failure)
        if self._unsupported and self.mode == "on":
            raise LifespanFailed("the application does not support the lifespan protocol")
        self._started = True
        if not self._unsupported:
            logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.task is None or self._unsupported or not self._started:
            return
        logger.info("Waiting for application shutdown.")
        await self._receive_queue.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._failure is not None:
            raise LifespanFailed(self._failure)
        logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self._failure is not None:
                return
            if self._startup_done.is_set() and self._started:
                self._failure = f"{type(exc).__name__}: {exc}"
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            elif self.mode == "auto":
                self._unsupported = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self._failure = f"{type(exc).__name__}: {exc}"
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._receive_queue.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = message.get("message") or "lifespan.startup.failed"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = message.get("message") or "lifespan.shutdown.failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI message type {kind!r} in the lifespan protocol.")
