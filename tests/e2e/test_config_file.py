"""`--config FILE`: options from TOML, between environment variables and defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import APPS, Juggler
from juggler.config import Config, ConfigError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "juggler.toml"
    path.write_text(text)
    return str(path)


def test_precedence_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'app = "raw:app"\ntimeout-keep-alive = 7\nthreads = 3\nlimit_concurrency = 9\n'
        'header = ["x-a:1", "x-b:2"]\nhttp = 2\n',
    )
    env = {"JUGGLER_THREADS": "5"}
    c = Config.resolve(None, {"config": path, "limit_concurrency": "4"}, env=env)
    assert c.app == "raw:app"
    assert c.timeout_keep_alive == 7.0  # file
    assert c.threads == 5  # env over file
    assert c.limit_concurrency == 4  # flag over file
    assert c.header == (("x-a", "1"), ("x-b", "2"))
    assert c.http == "2"  # a TOML number for a text option
    assert c.backlog == 2048  # default
    # The file may come from the environment too, and the app on the command line wins.
    c = Config.resolve("other:app", {}, env={"JUGGLER_CONFIG": path})
    assert c.app == "other:app" and c.timeout_keep_alive == 7.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timeout-keepalive = 1\n", "unknown option 'timeout-keepalive' in the config file"),
        ("threads = 'many'\n", "invalid value 'many' for --threads"),
        ("workers = 0\n", "invalid value 0 for --workers"),
        ("lifespan = 'sometimes'\n", "choose from auto, on, off"),
        ("threads = [\n", "cannot parse the config file"),
        ("[threads]\nx = 1\n", "must be a value, not a table"),
    ],
)
def test_bad_files_are_one_error_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config.resolve("raw:app", {"config": path}, env={})
    out = subprocess.run(
        [sys.executable, "-m", "juggler", "raw:app", "--app-dir", str(APPS), "--config", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message.split(" for ")[0] in out.stderr


def test_a_file_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    # Found by the toml_options fuzz target: tomllib decodes the bytes itself, and its
    # UnicodeDecodeError is no TOMLDecodeError, so it escaped as a traceback.
    path = tmp_path / "juggler.toml"
    path.write_bytes(b"port = 8000\ntimeout-keep-alive\xff\xff = 0\n")
    with pytest.raises(ConfigError, match=r"cannot parse the config file .*not UTF-8"):
        Config.resolve("raw:app", {"config": str(path)}, env={})
    out = subprocess.run(
        [sys.executable, "-m", "juggler", "raw:app", "--app-dir", str(APPS), "--config", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot parse the config file" in out.stderr


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        Config.resolve("raw:app", {"config": str(tmp_path / "nope.toml")}, env={})


def test_a_server_runs_from_its_file(tmp_path: Path, juggler: type[Juggler]) -> None:
    path = write(tmp_path, 'app = "raw:app"\nheader = ["x-from-file:yes"]\nserver-header = false\n')
    j = juggler("--config", path).ready()
    r = httpx.get(j.url + "/")
    assert r.headers["x-from-file"] == "yes"
    assert "server" not in r.headers
