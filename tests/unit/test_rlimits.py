"""The supervisor raises its soft open-files limit to the hard one before it forks."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, logging, resource
logging.basicConfig(level=logging.DEBUG, format="%(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
from juggler.rlimits import raise_open_files_limit
raise_open_files_limit()
print(json.dumps([*resource.getrlimit(resource.RLIMIT_NOFILE), hard]))
"""


def test_the_soft_limit_is_raised_to_the_hard_one_and_logged_at_debug():
    # A child of its own: the limit is process-wide.
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    soft, hard_now, hard_before = json.loads(proc.stdout)
    assert hard_now == hard_before
    assert soft == hard_before
    if hard_before > 256:
        assert f"Open files limit raised from 256 to {hard_before}." in proc.stderr


def test_a_huge_hard_limit_is_not_handed_on_whole(monkeypatch):
    import resource

    from juggler import rlimits

    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 2**30))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: calls.append(limits))
    rlimits.raise_open_files_limit()
    assert calls == [(rlimits.MAX_OPEN_FILES, 2**30)]
    calls.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda _: (rlimits.MAX_OPEN_FILES, 2**30))
    rlimits.raise_open_files_limit()
    assert calls == [], "already as high as it goes"
