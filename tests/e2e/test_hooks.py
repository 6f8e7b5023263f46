"""Server hooks: on_starting, on_reload and on_exit in the supervisor, worker_start and
worker_exit in each worker; given by flags, by the TOML file and to juggler.run(). Tracing
is set up in worker_start with the real OpenTelemetry SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import APPS, Juggler, children
from test_workers import pids_of_held_connections

pytestmark = pytest.mark.timeout(90)

ALL_HOOKS = [
    "--on-starting",
    "hooks_app:on_starting",
    "--on-reload",
    "hooks_app:on_reload",
    "--on-exit",
    "hooks_app:on_exit",
    "--worker-start",
    "hooks_app:worker_start",
    "--worker-exit",
    "hooks_app:worker_exit",
]


def run_cli(*args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "juggler", "--port", "0", "--app-dir", str(APPS), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(APPS),
        env={**os.environ, **(env or {})},
    )


def events(path: Path) -> list[tuple[str, int, str]]:
    """The hook log: (event, pid, the rest) per line."""
    lines = path.read_text().splitlines()
    return [(e, int(pid), rest) for e, pid, rest in (line.split(" ", 2) for line in lines)]


def test_hooks_run_in_order_in_the_supervisor_and_in_each_worker(juggler, tmp_path) -> None:
    log = tmp_path / "hooks.log"
    j = juggler(
        "workers_app:app", "--workers", "2", *ALL_HOOKS, env={"JUGGLER_TEST_HOOK_LOG": str(log)}
    ).ready()
    first = set(j.workers())
    j.proc.send_signal(signal.SIGHUP)
    for pid in first:
        j.wait_for(rf"Worker \[{pid}\] stopped")
    second = set(j.workers())
    assert len(second) == 2 and not first & second
    assert j.stop() == 0
    seen = events(log)
    supervisor = j.proc.pid
    assert [e for e, pid, _ in seen if pid == supervisor] == [
        "on_starting",
        "on_reload",
        "on_exit",
    ]
    assert seen[0][0] == "on_starting" and seen[-1][0] == "on_exit"
    for pid in first | second:
        assert [e for e, p, _ in seen if p == pid] == ["worker_start", "worker_exit"], seen
    # Each hook is given the config; worker_start runs before the app is imported.
    assert all(rest.startswith("workers=2") for _, _, rest in seen)
    starts = [rest for e, _, rest in seen if e == "worker_start"]
    assert starts == ["workers=2 app_imported=False"] * 4
    # The reload began after the first workers started, before the second ones did.
    order = [(e, pid) for e, pid, _ in seen]
    reload_at = order.index(("on_reload", supervisor))
    assert all(order.index(("worker_start", p)) < reload_at for p in first)
    assert all(order.index(("worker_start", p)) > reload_at for p in second)


def test_hooks_from_the_toml_file(juggler, tmp_path) -> None:
    log = tmp_path / "hooks.log"
    config = tmp_path / "juggler.toml"
    config.write_text(
        'worker-start = "hooks_app:worker_start"\nworker_exit = "hooks_app:worker_exit"\n'
        'on-exit = "hooks_app:on_exit"\n'
    )
    j = juggler(
        "workers_app:app", "--config", str(config), env={"JUGGLER_TEST_HOOK_LOG": str(log)}
    ).ready()
    (worker,) = j.workers()
    assert j.stop() == 0
    assert [(e, pid) for e, pid, _ in events(log)] == [
        ("worker_start", worker),
        ("worker_exit", worker),
        ("on_exit", j.proc.pid),
    ]


class RunScript(Juggler):
    """juggler.run() from a script instead of the command line."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        path = os.pathsep.join(p for p in (str(APPS), os.environ.get("PYTHONPATH")) if p)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **env}
        self._launch([sys.executable, str(script)], full_env, APPS)


def test_juggler_run_takes_hooks_as_callables_and_as_strings(tmp_path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "serve.py"
    script.write_text(
        "import juggler, hooks_app, workers_app\n"
        "if __name__ == '__main__':\n"
        "    juggler.run(workers_app.app, port=0, worker_start=hooks_app.worker_start,\n"
        "                on_exit='hooks_app:on_exit')\n"
    )
    j = RunScript(script, {"JUGGLER_TEST_HOOK_LOG": str(log)})
    try:
        j.ready()
        (worker,) = children(j.proc.pid)
        assert j.stop() == 0
    finally:
        j.kill()
    # The app object was imported by the script itself, in the supervisor, before the fork.
    assert events(log) == [
        ("worker_start", worker, "workers=1 app_imported=True"),
        ("on_exit", j.proc.pid, "workers=1"),
    ]


@pytest.mark.parametrize("flag", ["--on-starting", "--worker-start"])
def test_a_hook_that_raises_at_start_up_is_one_error_and_exit_3(flag) -> None:
    result = run_cli("workers_app:app", "--workers", "2", flag, "hooks_app:boom")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    name = flag[2:].replace("-", "_")
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"juggler: error: the {name} hook hooks_app:boom raised RuntimeError: the hook broke"
        f" (at {APPS / 'hooks_app.py'}, line "
    ), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("no_such_module:hook", "cannot import the --worker-exit hook: Could not import module"),
        ("hooks_app:missing", 'cannot import the --worker-exit hook: Attribute "missing" not'),
        ("hooks_app:not_callable", "the --worker-exit hook 'hooks_app:not_callable' is not"),
        ("hooks_app", "invalid value 'hooks_app' for --worker-exit: must look like"),
    ],
)
def test_a_hook_that_cannot_be_imported_is_a_bad_option(value, error) -> None:
    result = run_cli("workers_app:app", "--worker-exit", value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"juggler: error: {error}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "imported workers_app" not in result.stderr, "no worker was started"


def test_worker_start_sets_up_opentelemetry_in_each_worker(juggler, tmp_path) -> None:
    spans = tmp_path / "spans.jsonl"
    j = juggler(
        "otel_app:app",
        "--workers",
        "2",
        "--worker-start",
        "otel_hooks:worker_start",
        "--worker-exit",
        "otel_hooks:worker_exit",
        env={"JUGGLER_TEST_SPANS": str(spans)},
    ).ready()
    workers = set(j.workers())
    # Connections held open spread between the workers (see test_workers.py).
    served = pids_of_held_connections(j.url, 4)
    assert set(served) == workers, served
    assert j.stop() == 0
    exported = [json.loads(line) for line in spans.read_text().splitlines()]
    assert len(exported) == 4
    assert {s["name"] for s in exported} == {"request"}
    assert {s["attributes"]["http.target"] for s in exported} == {"/"}
    # Each span came from the worker that served its request, through its own processor.
    assert sorted(s["pid"] for s in exported) == sorted(served)


def test_a_hook_that_raises_once_serving_is_logged_and_juggler_goes_on(juggler) -> None:
    j = juggler(
        "workers_app:app",
        "--on-reload",
        "hooks_app:boom",
        "--worker-exit",
        "hooks_app:boom",
        "--on-exit",
        "hooks_app:boom",
    ).ready()
    (old,) = j.workers()
    j.proc.send_signal(signal.SIGHUP)
    j.wait_for(r"the on_reload hook hooks_app:boom raised RuntimeError: the hook broke")
    # The reload goes on: a new worker serves, the old one ran its worker_exit and stopped.
    j.wait_for(r"the worker_exit hook hooks_app:boom raised RuntimeError")
    j.wait_for(rf"Worker \[{old}\] stopped \(exit code 0\)")
    (new,) = j.workers()
    assert new != old
    assert j.stop() == 0
    j.wait_for(r"the on_exit hook hooks_app:boom raised RuntimeError")
    # Each logged with its traceback, down to the hook's line.
    assert j.output.count('hooks_app.py", line') == 4, j.output
