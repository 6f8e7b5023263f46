#!/usr/bin/env python3
"""Breaks one rule of python/juggler/policy.py at a time and checks that a test notices.

    .venv/bin/python scripts/policy_mutants.py

mutmut 2 cannot parse policy.py (parso knows no ``match``), so this is a hand-written list of
single edits, one per rule, comparison and constant: each is applied alone, the unit tests of
the policy run (``tests/unit/test_policy.py``, half a second), and the file is restored. It
prints the mutants no test killed and exits 1 if there is one not known to be unreachable.
"""

# The mutants are lines of policy.py with their indentation: some are longer than 100.
# ruff: noqa: E501

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "python" / "juggler" / "policy.py"
TESTS = ROOT / "tests" / "unit" / "test_policy.py"

#: (text of policy.py, what it becomes). Each text must occur exactly once.
MUTANTS: list[tuple[str, str]] = [
    ("and self.stopping and worker.ready_at", "and worker.ready_at"),
    ("and self.stopping and worker.ready_at is not None:", "and self.stopping:"),
    ("if code > 0 and self.exit_code", "if code != 0 and self.exit_code"),
    ("if code > 0 and self.exit_code == EXIT_OK and", "if code > 0 and"),
    (
        '                *self._begin_stop("graceful", now),\n            ]\n        what',
        '                *self._begin_stop("fast", now),\n            ]\n        what',
    ),
    (
        "                # Also one that was",
        "                return []\n                # Also one that was",
    ),
    ("CRASH_WINDOW = 2.0", "CRASH_WINDOW = 2.5"),
    ("STOP_MARGIN = 10.0", "STOP_MARGIN = 9.0"),
    ("FAST_STOP_TIMEOUT = 5.0", "FAST_STOP_TIMEOUT = 6.0"),
    ("FIRST_BACK_OFF = 0.25", "FIRST_BACK_OFF = 0.5"),
    ("MAX_BACK_OFF = 10.0", "MAX_BACK_OFF = 16.0"),
    ("MAX_START_FAILURES = 5", "MAX_START_FAILURES = 6"),
    ("2.0 ** (failures - 1)", "2.0 ** failures"),
    ("return code in (-signal.SIGKILL, -signal.SIGTERM)", "return code in (-signal.SIGKILL,)"),
    (
        "        if worker.phase is Phase.STARTING:\n            worker.phase = Phase.READY",
        "        worker.phase = Phase.READY",
    ),
    (
        "if not self.announced and self._ready_count() >= self.target:",
        "if self._ready_count() >= self.target:",
    ),
    (
        "if not self.announced and self._ready_count() >= self.target:",
        "if not self.announced and self._ready_count() > self.target:",
    ),
    (
        "if not worker.active or self.stopping or now < self.respawn_at:",
        "if not worker.active or self.stopping:",
    ),
    (
        "if not worker.active or self.stopping or now < self.respawn_at:",
        "if not worker.active or now < self.respawn_at:",
    ),
    (
        "if not worker.active or self.stopping or now < self.respawn_at:",
        "if self.stopping or now < self.respawn_at:",
    ),
    (
        "if not worker.active or self.stopping or now < self.respawn_at:",
        "if not worker.active or self.stopping or now <= self.respawn_at:",
    ),
    (
        "if now - worker.ready_at < CRASH_WINDOW and not killed_from_outside(code):",
        "if now - worker.ready_at <= CRASH_WINDOW and not killed_from_outside(code):",
    ),
    (
        "if now - worker.ready_at < CRASH_WINDOW and not killed_from_outside(code):",
        "if now - worker.ready_at < CRASH_WINDOW:",
    ),
    ("code == 0 or worker.phase is Phase.KILLED else", "code == 0 else"),
    ("failed_code = code if code > 0 else 1", "failed_code = code if code != 0 else 1"),
    ("if any(w.phase is Phase.RETIRING for w in self.workers.values()):", "if False:"),
    (
        "        if now < self.respawn_at:\n            # Another",
        "        if now <= self.respawn_at:\n            # Another",
    ),
    (
        "        if now < self.respawn_at:\n            # Another",
        "        if False:\n            # Another",
    ),
    (
        "if self.start_failures >= MAX_START_FAILURES:",
        "if self.start_failures > MAX_START_FAILURES:",
    ),
    (
        "            if w.ready_at is None:\n                # The other",
        "            if w.phase is Phase.STARTING:\n                # The other",
    ),
    (
        "            elif w.phase is Phase.RETIRING:\n                w.phase = Phase.READY",
        "            elif False:\n                w.phase = Phase.READY",
    ),
    (
        "            if w.phase in (Phase.STOPPING, Phase.KILLED):\n                continue\n            if w.ready_at",
        "            if w.ready_at",
    ),
    (
        "        self.start_failures += 1\n        actions.append(self._back_off",
        "        actions.append(self._back_off",
    ),
    (
        "        if not self.workers and not self.ever_ready:\n            self.exit_code = EXIT_BIND_FAILED",
        "        if not self.ever_ready:\n            self.exit_code = EXIT_BIND_FAILED",
    ),
    ("            if self.stopping and sig == signal.SIGINT:", "            if False:"),
    (
        "        if self.stopping:\n            return []\n        if sig == signal.SIGHUP:",
        "        if sig == signal.SIGHUP:",
    ),
    ("            if self.target > 1:\n", "            if self.target > 0:\n"),
    ("        if self.stopping:\n            return []\n        old =", "        old ="),
    ("        self.respawn_at = 0.0\n        return [log]", "        return [log]"),
    ('w.retire_reason = w.retire_reason or "reload"', 'w.retire_reason = "reload"'),
    ("if self.options.preloaded:", "if not self.options.preloaded:"),
    ('if self.stopping == "fast" or self.stopping == how:', "if self.stopping == how:"),
    ("        if self.workers and not quiet:", "        if self.workers:"),
    (
        "if w.phase is Phase.KILLED or (sig == signal.SIGTERM and w.phase is Phase.STOPPING):",
        "if w.phase is Phase.KILLED:",
    ),
    (
        "if w.phase is Phase.KILLED or (sig == signal.SIGTERM and w.phase is Phase.STOPPING):",
        "if sig == signal.SIGTERM and w.phase is Phase.STOPPING:",
    ),
    ("if sig == signal.SIGQUIT and w.ready_at is None:", "if False:"),
    (
        "        worker.stop_sent = now\n        return SendSignal",
        "        worker.stop_sent = worker.stop_sent or now\n        return SendSignal",
    ),
    ("        if self.stopping:\n            return actions\n", ""),
    ("            if now - w.stop_sent > allowed:", "            if now - w.stop_sent >= allowed:"),
    (
        "            if w.phase is not Phase.STOPPING or w.stop_sent is None:",
        "            if w.stop_sent is None:",
    ),
    (
        "                w.phase = Phase.KILLED\n                actions += [",
        "                actions += [",
    ),
    (
        "        if now - self.last_check > limit / 2:",
        "        if now - self.last_check >= limit / 2:",
    ),
    ("        if now - self.last_check > limit / 2:", "        if False:"),
    (
        "        self.last_check = now\n        actions: list[Action] = []\n        for worker",
        "        actions: list[Action] = []\n        for worker",
    ),
    (
        "if worker.phase not in (Phase.READY, Phase.RETIRING) or worker.ready_at is None:",
        "if worker.phase not in (Phase.READY,) or worker.ready_at is None:",
    ),
    (
        "if worker.phase not in (Phase.READY, Phase.RETIRING) or worker.ready_at is None:",
        "if worker.phase not in (Phase.READY, Phase.RETIRING):",
    ),
    ("            if silent > limit:", "            if silent >= limit:"),
    ('                self.restarts["timeout"] += 1\n', ""),
    (
        "                and worker.phase is Phase.READY\n                and now >= self.respawn_at",
        "                and now >= self.respawn_at",
    ),
    (
        "                and worker.phase is Phase.READY\n                and now >= self.respawn_at",
        "                and worker.phase is Phase.READY",
    ),
    ("                age += silent\n", ""),
    ("                if age > limit:", "                if age >= limit:"),
    ('                    worker.retire_reason = "timeout"\n', ""),
    ("if not retiring or self._ready_count() < self.target:", "if not retiring:"),
    (
        "if not retiring or self._ready_count() < self.target:",
        "if not retiring or self._ready_count() < self.target - 1:",
    ),
    ('self.restarts[w.retire_reason or "reload"] += 1', 'self.restarts["reload"] += 1'),
    (
        "w.ready_at is not None and now - w.ready_at >= CRASH_WINDOW",
        "w.ready_at is not None and now - w.ready_at > CRASH_WINDOW",
    ),
    ("            self.start_failures = 0\n        active", "            pass\n        active"),
    ("            if not self.ever_ready and active:", "            if False:"),
    (
        "            if now < self.respawn_at:\n                return []\n            return [Spawn",
        "            if now <= self.respawn_at:\n                return []\n            return [Spawn",
    ),
    (
        "key=lambda w: (w.phase is Phase.READY, w.started)",
        "key=lambda w: (w.phase is Phase.READY, -w.started)",
    ),
    ("key=lambda w: (w.phase is Phase.READY, w.started)", "key=lambda w: (w.started,)"),
    (
        "return sum(1 for w in self.workers.values() if w.phase is Phase.READY)",
        "return sum(1 for w in self.workers.values() if w.ready_at is not None)",
    ),
    (
        "        worker.last_beat = now\n        worker.stalled_call = stalled_call",
        "        worker.stalled_call = stalled_call",
    ),
    (
        "                if worker.ready_at is None:\n                    # Retired",
        "                if False:\n                    # Retired",
    ),
]

#: No signal or failure can ask for a graceful stop once a fast one began (every worker is then
#: stopping or killed, so none can fail to start): refusing it is defensive only.
UNREACHABLE = {'if self.stopping == "fast" or self.stopping == how:'}


def main() -> int:
    original = POLICY.read_text()
    survivors: list[tuple[str, str]] = []
    for old, new in MUTANTS:
        if original.count(old) != 1:
            print(f"not found exactly once, fix the list: {old!r}")
            return 2
        POLICY.write_text(original.replace(old, new))
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", str(TESTS)],
                capture_output=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                cwd=ROOT,
            )
        finally:
            POLICY.write_text(original)
        if result.returncode == 0:
            survivors.append((old, new))
    print(f"{len(MUTANTS)} mutants, {len(MUTANTS) - len(survivors)} killed")
    for old, new in survivors:
        known = " (unreachable)" if old in UNREACHABLE else ""
        print(f"survived{known}: {old.strip()!r} -> {new.strip()!r}")
    return 1 if any(old not in UNREACHABLE for old, _ in survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
