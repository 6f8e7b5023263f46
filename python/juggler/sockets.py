"""Binding the listening socket: TCP host/port, a UNIX socket path, or an inherited fd."""

from __future__ import annotations

import os
import socket
import stat

from .config import Config


class BindError(OSError):
    """The address could not be bound; the message names it."""


def bind(config: Config) -> socket.socket:
    if config.fd is not None:
        try:
            sock = socket.socket(fileno=config.fd)
        except OSError as exc:
            raise BindError(f"--fd {config.fd} is not a usable socket: {exc.strerror}") from None
        sock.setblocking(False)
        return sock
    if config.uds:
        return _bind_unix(config.uds, config.backlog)
    return _bind_tcp(config.host, config.port, config.backlog)


def _bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    return _bind_inet(host, port, backlog, reuse_port=False)


def reserve_reuse_port(host: str, port: int) -> socket.socket:
    """For --reuse-port: binds (without listening) to resolve port 0 and to check the address
    once, in the supervisor; each worker then binds and listens on the same address."""
    return _bind_inet(host, port, None, reuse_port=True)


def bind_reuse_port(host: str, port: int, backlog: int) -> socket.socket:
    """A worker's own listening socket in the SO_REUSEPORT group for ``host:port``."""
    return _bind_inet(host, port, backlog, reuse_port=True)


def _bind_inet(host: str, port: int, backlog: int | None, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``host:port``, listening unless ``backlog`` is None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind to {host}:{port}: {exc.strerror or exc}") from None
    except UnicodeError as exc:
        sock.close()
        raise BindError(f"cannot bind to {host}:{port}: {exc}") from None
    sock.setblocking(False)
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    # A socket file left behind by an earlier run would make bind fail; anything else stays.
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind to unix socket {path}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def describe(sock: socket.socket, tls: bool = False) -> str:
    """The address users should open, for the startup line."""
    if sock.family == socket.AF_UNIX:
        return f"unix socket {sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
