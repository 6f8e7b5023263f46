"""Real servers and tools the end-to-end tests start (HAProxy, ...), from Debian's packages.

A missing one is installed with apt-get when we are root, as scripts/postgres.sh does for
PostgreSQL. When it cannot be installed the test is skipped with the reason, or fails
instead when JUGGLER_REQUIRE_TOOLS is set (as in CI), so that CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

_installing = threading.Lock()


def require(command: str, package: str) -> str:
    """The path of ``command``, from Debian's ``package`` (installed if missing)."""
    with _installing:
        found = shutil.which(command, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        if found:
            return found
        reason = _install(package)
        found = shutil.which(command, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        if found:
            return found
    message = f"{command} (Debian package {package}) is not installed and cannot be: {reason}"
    if os.environ.get("JUGGLER_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def _install(package: str) -> str:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "installing it needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode == 0 and cmd[1] == "install":
            return "installed"
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "apt-get failed"
