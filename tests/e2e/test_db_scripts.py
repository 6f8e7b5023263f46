"""scripts/postgres.sh and scripts/mariadb.sh, as CI and the fixtures call them: through a pipe
that is read to its end ("$(scripts/mariadb.sh)", subprocess with captured output). Each starts
a server of its own on a spare port and data directory, so the shared one is not touched.

The start must return once the server answers: a process of the script's left holding the pipe
(the server's parent subshell did, once) makes the caller wait for ever, and CI with it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port

SCRIPTS = {
    # script, its port and data variables, the assignment it prints
    "postgres": ("postgres.sh", "JUGGLER_PGPORT", "JUGGLER_PGDATA", "DATABASE_URL"),
    "mariadb": ("mariadb.sh", "JUGGLER_MYPORT", "JUGGLER_MYDATA", "MYSQL_URL"),
}


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the servers' own users (postgres, mysql) can enter: pytest's tmp_path is
    private to root."""
    path = Path(tempfile.mkdtemp(prefix="juggler-dbscript-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Generous: a first run installs the server from Debian's packages inside the timed call.
# What the timeout is for is a start that never returns.
@pytest.mark.timeout(700)
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_start_returns_through_a_pipe_and_stop_stops(name: str, reachable_dir: Path) -> None:
    script, port_var, data_var, url_var = SCRIPTS[name]
    path = str(ROOT / "scripts" / script)
    port = free_port()
    data = reachable_dir / "data"
    env = {**os.environ, port_var: str(port), data_var: str(data)}
    try:
        try:
            started = subprocess.run(
                ["bash", path], capture_output=True, text=True, env=env, timeout=600
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{script} did not return: its pipe stayed open ({e.stderr!r})")
        if started.returncode == 3:
            pytest.skip(f"{name} cannot be installed here: {started.stderr.strip()}")
        assert started.returncode == 0, started.stderr
        assert re.search(rf"{url_var}=\S+:{port}/", started.stdout), started.stdout
        assert "_STARTED=1" in started.stdout
        # A second call finds it running and says so.
        again = subprocess.run(["bash", path], capture_output=True, text=True, env=env, timeout=30)
        assert again.returncode == 0 and "_STARTED=0" in again.stdout, again.stderr
    finally:
        subprocess.run(["bash", path, "destroy"], env=env, timeout=60, capture_output=True)
    assert not data.exists()
