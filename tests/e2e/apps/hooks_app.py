"""Server hooks for test_hooks.py: each appends one line to the file named by
$JUGGLER_TEST_HOOK_LOG (one write, so that processes' lines do not mix)."""

import os
import sys


def _record(event: str, config) -> None:
    line = f"{event} {os.getpid()} workers={config.workers}"
    if event == "worker_start":
        # Runs before the app is imported.
        line += f" app_imported={'workers_app' in sys.modules}"
    fd = os.open(os.environ["JUGGLER_TEST_HOOK_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def on_starting(config):
    _record("on_starting", config)


def on_reload(config):
    _record("on_reload", config)


def on_exit(config):
    _record("on_exit", config)


def worker_start(config):
    _record("worker_start", config)


def worker_exit(config):
    _record("worker_exit", config)


def boom(config):
    raise RuntimeError("the hook broke")


not_callable = 42
