"""The interface options, and how ``--interface`` tells an ASGI app from a WSGI one (no server)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from juggler.config import Config, ConfigError
from juggler.importer import ImportFromStringError
from juggler.interfaces import InterfaceError, detect_interface, resolve_interface

APPS = Path(__file__).resolve().parent.parent / "e2e" / "apps"


def test_interface_option_defaults():
    config = Config.resolve("x:app", {}, env={})
    assert config.interface == "auto"
    assert config.threads == 32
    assert config.queue_size is None
    assert config.timeout_write == 60.0
    # What WsgiInterface reads; None refuses nothing for the count, 0 nothing for the wait.
    assert config.wsgi.queue_size is None
    assert (config.queue_timeout, config.wsgi.queue_timeout) == (0.0, 0.0)
    assert Config.resolve("x:app", {"queue_size": 3}, env={}).wsgi.queue_size == 3


def test_interface_options_from_env_and_precedence():
    env = {
        "JUGGLER_INTERFACE": "wsgi",
        "JUGGLER_THREADS": "4",
        "JUGGLER_QUEUE_SIZE": "7",
        "JUGGLER_TIMEOUT_WRITE": "2.5",
        "JUGGLER_QUEUE_TIMEOUT": "0.5",
    }
    config = Config.resolve("x:app", {}, env=env)
    assert (config.interface, config.threads, config.queue_size) == ("wsgi", 4, 7)
    assert config.timeout_write == 2.5
    assert config.wsgi.queue_timeout == 0.5
    assert (config.wsgi.threads, config.wsgi.queue_size) == (4, 7)
    assert config.timeouts.timeout_write == 2.5
    config = Config.resolve("x:app", {"interface": "asgi", "threads": "9"}, env=env)
    assert (config.interface, config.threads) == ("asgi", 9)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"interface": "cgi"}, "--interface"),
        ({"threads": "0"}, "--threads"),
        ({"threads": 0}, "--threads"),
        ({"queue_size": "-1"}, "--queue-size"),
        ({"queue_size": 0}, "--queue-size"),
        ({"timeout_write": "-1"}, "--timeout-write"),
        ({"timeout_write": "nan"}, "--timeout-write"),
        ({"queue_timeout": "-1"}, "--queue-timeout"),
    ],
)
def test_interface_options_reject_bad_values(options, flag):
    with pytest.raises(ConfigError, match=flag):
        Config.resolve("x:app", options, env={})


# Apps of every shape resolve_interface must classify.


async def asgi_function(scope, receive, send):
    pass


def wsgi_function(environ, start_response):
    return [b""]


def sync_asgi(scope, receive, send):
    """A plain function that returns the coroutine: what many ASGI wrappers look like."""
    return asgi_function(scope, receive, send)


class AsgiCallable:
    async def __call__(self, scope, receive, send):
        pass


class WsgiCallable:
    def __call__(self, environ, start_response):
        return [b""]


async def asgi_with_config(config, scope, receive, send):
    pass


def wsgi_with_config(config, environ, start_response):
    return [b""]


def star_args(*args):
    pass


def one_argument(environ):
    pass


def optional_third(environ, start_response, extra=None):
    pass


def keyword_only(environ, start_response, *, required):
    pass


ASGI_APPS = {
    "async function": asgi_function,
    "async __call__ instance": AsgiCallable(),
    "sync function taking scope, receive, send": sync_asgi,
    "partial of async function": functools.partial(asgi_function),
    "partial binding a first argument": functools.partial(asgi_with_config, {}),
    "partial of async __call__ instance": functools.partial(AsgiCallable()),
    "partial of sync 3-argument function": functools.partial(sync_asgi),
    "bound async method": AsgiCallable().__call__,
}
WSGI_APPS = {
    "function": wsgi_function,
    "__call__ instance": WsgiCallable(),
    "partial of function": functools.partial(wsgi_function),
    "partial binding a first argument": functools.partial(wsgi_with_config, {}),
    "partial of instance": functools.partial(WsgiCallable()),
    "bound method": WsgiCallable().__call__,
}
AMBIGUOUS_APPS = {
    "*args": (star_args, "(*args), which fits both"),
    "one argument": (one_argument, "(environ), which fits neither"),
    "optional third argument": (optional_third, "which fits both"),
    "required keyword-only argument": (keyword_only, "which fits neither"),
    "partial of *args": (functools.partial(star_args), "(*args), which fits both"),
    "builtin": (print, "which fits both"),
    "class": (WsgiCallable, "it is a class"),
}


@pytest.mark.parametrize("app", ASGI_APPS.values(), ids=ASGI_APPS.keys())
def test_asgi_apps_are_detected(app):
    assert resolve_interface(app, "auto") == ("asgi", "detected")
    assert resolve_interface(app, "asgi") == ("asgi", "chosen")
    with pytest.raises(InterfaceError, match=r"^--interface wsgi was given, but .* is an ASGI app"):
        resolve_interface(app, "wsgi")


@pytest.mark.parametrize("app", WSGI_APPS.values(), ids=WSGI_APPS.keys())
def test_wsgi_apps_are_detected(app):
    assert resolve_interface(app, "auto") == ("wsgi", "detected")
    assert resolve_interface(app, "wsgi") == ("wsgi", "chosen")
    with pytest.raises(InterfaceError, match=r"^--interface asgi was given, but .* is a WSGI app"):
        resolve_interface(app, "asgi")


@pytest.mark.parametrize(("app", "why"), AMBIGUOUS_APPS.values(), ids=AMBIGUOUS_APPS.keys())
def test_ambiguous_apps_need_a_choice_and_trust_it(app, why):
    with pytest.raises(InterfaceError) as info:
        resolve_interface(app, "auto", name="m:app")
    message = str(info.value)
    assert message.startswith("cannot tell whether 'm:app' is an ASGI or a WSGI app: ")
    assert message.endswith("; pass --interface asgi or --interface wsgi")
    assert why in message
    assert "\n" not in message
    assert resolve_interface(app, "asgi") == ("asgi", "chosen")
    assert resolve_interface(app, "wsgi") == ("wsgi", "chosen")


def test_mismatch_messages_name_both_sides():
    with pytest.raises(InterfaceError) as info:
        resolve_interface(asgi_function, "wsgi", name="x:app")
    assert str(info.value) == (
        "--interface wsgi was given, but 'x:app' is an ASGI app "
        "(async callable taking scope, receive, send)"
    )
    with pytest.raises(InterfaceError) as info:
        resolve_interface(WsgiCallable(), "asgi", name="x:app")
    assert str(info.value) == (
        "--interface asgi was given, but 'x:app' is a WSGI app "
        "(plain callable taking environ, start_response)"
    )
    # Without a name, the message names the object itself.
    with pytest.raises(InterfaceError, match="'test_interfaces:wsgi_function' is a WSGI app"):
        resolve_interface(wsgi_function, "asgi")
    with pytest.raises(InterfaceError, match="the AsgiCallable object is an ASGI app"):
        resolve_interface(AsgiCallable(), "wsgi")


def test_interface_error_is_an_app_load_error():
    # The supervisor reports ImportFromStringError as "the app cannot be loaded" (exit 4).
    assert issubclass(InterfaceError, ImportFromStringError)
    with pytest.raises(ValueError, match="cgi"):
        resolve_interface(asgi_function, "cgi")


def test_long_signatures_are_cut_short():
    def many(a, b, cccccccccc=0, dddddddddd=1, eeeeeeeeee=2, ffffffffff=3, gggggggggg=4):
        pass

    kind, why = detect_interface(many)
    assert kind is None
    assert why.startswith("it takes (a, b, cccccccccc=..., ") and ", ...), which fits" in why


def test_flask_app_is_wsgi():
    flask = pytest.importorskip("flask")
    app = flask.Flask("iface")
    assert resolve_interface(app, "auto") == ("wsgi", "detected")
    assert resolve_interface(app.wsgi_app, "auto") == ("wsgi", "detected")
    with pytest.raises(InterfaceError, match="the Flask object is a WSGI app"):
        resolve_interface(app, "asgi")


def test_starlette_and_fastapi_apps_are_asgi():
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.middleware.cors import CORSMiddleware

    for app in (Starlette(), FastAPI(), CORSMiddleware(FastAPI(), allow_origins=["*"])):
        assert resolve_interface(app, "auto") == ("asgi", "detected")
        with pytest.raises(InterfaceError, match="is an ASGI app"):
            resolve_interface(app, "wsgi")
    # The class itself (a forgotten --factory, say) cannot be told.
    with pytest.raises(InterfaceError, match="it is a class"):
        resolve_interface(Starlette, "auto")


def test_django_wsgi_and_asgi_handlers():
    pytest.importorskip("django")
    # Django's settings are process-wide: configure them in a subprocess
    # (tests/e2e/apps/iface_django).
    code = (
        "import json, iface_django\n"
        "from juggler.interfaces import InterfaceError, resolve_interface\n"
        "out = {}\n"
        "for name in ('wsgi_app', 'asgi_app'):\n"
        "    app = getattr(iface_django, name)\n"
        "    out[name] = [type(app).__name__, resolve_interface(app, 'auto')]\n"
        "    for requested in ('asgi', 'wsgi'):\n"
        "        try:\n"
        "            out[name].append(resolve_interface(app, requested))\n"
        "        except InterfaceError as exc:\n"
        "            out[name].append(str(exc))\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=APPS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["wsgi_app"] == [
        "WSGIHandler",
        ["wsgi", "detected"],
        "--interface asgi was given, but the WSGIHandler object is a WSGI app "
        "(plain callable taking environ, start_response)",
        ["wsgi", "chosen"],
    ]
    assert out["asgi_app"] == [
        "ASGIHandler",
        ["asgi", "detected"],
        ["asgi", "chosen"],
        "--interface wsgi was given, but the ASGIHandler object is an ASGI app "
        "(async callable taking scope, receive, send)",
    ]


def test_workers_from_juggler_workers_then_web_concurrency():
    assert Config.resolve("x:app", {}, env={}).workers == 1
    assert Config.resolve("x:app", {}, env={"WEB_CONCURRENCY": "3"}).workers == 3
    both = {"WEB_CONCURRENCY": "3", "JUGGLER_WORKERS": "5"}
    assert Config.resolve("x:app", {}, env=both).workers == 5
    assert Config.resolve("x:app", {"workers": 2}, env=both).workers == 2
