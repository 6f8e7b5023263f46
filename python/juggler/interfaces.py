"""Telling an ASGI app from a WSGI app, and checking the one the user asked for.

An ASGI app is a coroutine function ``app(scope, receive, send)`` (or an object whose
``__call__`` is one, as Starlette, FastAPI and Django's ``ASGIHandler``), or a plain callable
that takes exactly those three arguments and returns an awaitable. A WSGI app is a plain
callable taking ``(environ, start_response)`` (Flask, Django's ``WSGIHandler``, ...).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from .importer import ImportFromStringError

INTERFACES = ("asgi", "wsgi")

#: The parameters each interface calls the app with, for messages.
_SHAPES = {"asgi": "scope, receive, send", "wsgi": "environ, start_response"}
#: Longer signatures are cut short in messages.
_LONGEST = 60


class InterfaceError(ImportFromStringError):
    """The app's interface cannot be told, or it is not the one that was asked for."""


def resolve_interface(app: Any, requested: str, *, name: str | None = None) -> tuple[str, str]:
    """Returns ``(interface, how)``: ``"asgi"`` or ``"wsgi"``, and ``"detected"`` or ``"chosen"``.

    ``requested`` is the ``--interface`` option: ``"auto"`` detects the interface and raises
    ``InterfaceError`` when the app's shape does not tell; ``"asgi"`` or ``"wsgi"`` is trusted
    unless the app clearly is the other kind, which raises ``InterfaceError`` naming both.
    ``name`` is how messages refer to the app (default: its module and qualified name).
    """
    if requested not in ("auto", *INTERFACES):
        raise ValueError(f"unknown interface {requested!r}: choose from auto, asgi, wsgi")
    shown = repr(name) if name is not None else _describe(app)
    detected, why = detect_interface(app)
    if requested == "auto":
        if detected is None:
            raise InterfaceError(
                f"cannot tell whether {shown} is an ASGI or a WSGI app: {why}; "
                "pass --interface asgi or --interface wsgi"
            )
        return detected, "detected"
    if detected is not None and detected != requested:
        article = "an" if detected == "asgi" else "a"
        raise InterfaceError(
            f"--interface {requested} was given, but {shown} is {article} "
            f"{detected.upper()} app ({why})"
        )
    return requested, "chosen"


def describe_interface(config: Any, interface: str, how: str) -> str:
    """The startup line naming the interface, e.g. ``Using the ASGI interface (detected)``."""
    if interface == "wsgi":
        return f"Using the WSGI interface with up to {config.threads} threads ({how})"
    return f"Using the {interface.upper()} interface ({how})"


def detect_interface(app: Any) -> tuple[str | None, str]:
    """Returns ``("asgi" | "wsgi" | None, reason)``; ``None`` when the app's shape cannot tell.

    The reason describes what was seen, for messages ("async callable taking scope, receive,
    send", "it takes (*args), which fits both", ...).
    """
    params = _positional_params(app)
    if _is_async(app):
        taking = f" taking {', '.join(params.names)}" if params and params.names else ""
        return "asgi", f"async callable{taking}"
    if params is None:
        return None, "its signature cannot be inspected"
    takes_two, takes_three = params.accepts(2), params.accepts(3)
    if takes_three and not takes_two:
        return "asgi", f"callable taking {params.shown(3, 'asgi')}"
    if takes_two and not takes_three:
        return "wsgi", f"plain callable taking {params.shown(2, 'wsgi')}"
    fits = "both" if takes_two else "neither"
    why = f"it takes {params.describe()}, which fits {fits}"
    if inspect.isclass(app):
        why += " (it is a class: point APP at an instance, or pass --factory)"
    return None, why


class _Params:
    """What an app's signature says about calling it with positional arguments."""

    def __init__(self, signature: inspect.Signature) -> None:
        positional = [
            p
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self.signature = signature
        self.names = [p.name for p in positional]
        self.required = sum(1 for p in positional if p.default is p.empty)
        self.most: float = len(positional)
        if any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
            self.most = float("inf")
        self.keyword_only_required = any(
            p.kind == p.KEYWORD_ONLY and p.default is p.empty for p in signature.parameters.values()
        )

    def accepts(self, count: int) -> bool:
        return not self.keyword_only_required and self.required <= count <= self.most

    def shown(self, count: int, interface: str) -> str:
        names = self.names[:count]
        if len(names) == count:
            return ", ".join(names)
        return f"{count} arguments ({_SHAPES[interface]})"

    def describe(self) -> str:
        """The signature without annotations, and with defaults shown as ``...``."""
        params = [
            p.replace(annotation=p.empty, default=p.empty if p.default is p.empty else _ELLIPSIS)
            for p in self.signature.parameters.values()
        ]
        text = str(
            self.signature.replace(parameters=params, return_annotation=inspect.Signature.empty)
        )
        cut = text.rfind(", ", 0, _LONGEST - 5)
        if len(text) > _LONGEST and cut > 0:
            text = text[:cut] + ", ...)"
        return text


class _Ellipsis:
    def __repr__(self) -> str:
        return "..."


_ELLIPSIS = _Ellipsis()


def _positional_params(app: Any) -> _Params | None:
    try:
        return _Params(inspect.signature(app))
    except (TypeError, ValueError):
        # Builtins and some extension types have no signature to inspect.
        return None


def _is_async(app: Any) -> bool:
    """Whether calling ``app`` runs a coroutine function (through partials and ``__call__``)."""
    target = app
    while isinstance(target, functools.partial):
        target = target.func
    if _is_coroutine_function(target):
        return True
    if inspect.isclass(target) or inspect.isroutine(target):
        # Calling a class constructs an instance; a function's __call__ is the function.
        return False
    return callable(target) and _is_coroutine_function(type(target).__call__)


def _is_coroutine_function(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # Python < 3.12: asgiref's markcoroutinefunction (Django) sets asyncio's private marker.
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    return marker is not None and getattr(func, "_is_coroutine", None) is marker


def _describe(app: Any) -> str:
    module = getattr(app, "__module__", None)
    qualname = getattr(app, "__qualname__", None)
    if isinstance(app, functools.partial):
        return f"functools.partial({_describe(app.func)}, ...)"
    if module and qualname:
        return repr(f"{module}:{qualname}")
    return f"the {type(app).__name__} object"
