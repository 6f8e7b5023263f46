"""The worker-to-supervisor channel's encoding and parsing, over a real pipe, without a server.

These run in milliseconds, so mutmut can afford them for ``python/juggler/channel.py`` (they
are ``make mutants-python``'s default); ``test_workers.py`` covers the channel end to end,
where a worker never writes the malformed lines checked here.
"""

from __future__ import annotations

import errno
import os

import pytest
from juggler.channel import (
    Message,
    SupervisorChannel,
    WorkerChannel,
    beat_interval,
    parse,
    read_lines,
)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def written(r: int) -> bytes:
    os.set_blocking(r, False)
    try:
        return os.read(r, 1 << 20)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize(
    ("timeout_worker", "interval"),
    [
        (-1.0, 1.0),
        (0.0, 1.0),
        (100.0, 1.0),
        (4.0, 1.0),
        (2.0, 0.5),
        (0.2, 0.05),
        (0.04, 0.01),
        (0.01, 0.01),
    ],
)
def test_beat_interval_fits_four_beats_in_the_timeout_within_bounds(timeout_worker, interval):
    assert beat_interval(timeout_worker) == pytest.approx(interval)


def test_the_worker_end_writes_one_line_per_message_without_blocking(pipe):
    r, w = pipe
    channel = WorkerChannel(w)
    assert not os.get_blocking(w)
    channel.ready()
    channel.beat(None)
    channel.beat((1.23456, "GET /x"))
    channel.recycle(42)
    assert written(r) == b"ready\nbeat\nbeat 1.235 GET /x\nrecycle 42\n"


def test_a_beat_names_at_most_512_characters_of_the_call_on_one_line(pipe):
    r, w = pipe
    channel = WorkerChannel(w)
    channel.beat((2.0, "GET /" + "a" * 1000))
    line = written(r)
    assert line == b"beat 2.000 GET /" + b"a" * 507 + b"\n"
    channel.beat((0.5, "GET /a\nrecycle 1"))
    assert written(r) == b"beat 0.500 GET /a recycle 1\n"
    # Text that is not valid UTF-8 (a lone surrogate from a latin-1 path) is replaced.
    channel.beat((0.5, "GET /\udcff"))
    assert written(r) == b"beat 0.500 GET /?\n"


def test_a_full_pipe_drops_the_message_instead_of_blocking(pipe):
    _, w = pipe
    channel = WorkerChannel(w)
    os.set_blocking(w, False)
    filler = b"x" * 65536
    while True:
        try:
            os.write(w, filler)
        except BlockingIOError:
            break
    channel.beat(None)  # must return at once, and not raise


def test_a_gone_supervisor_is_ignored_but_other_errors_are_not(pipe):
    r, w = pipe
    channel = WorkerChannel(w)
    os.close(r)
    channel.ready()  # EPIPE: the worker learns of it through its parent-death signal
    os.close(w)
    with pytest.raises(OSError) as raised:
        channel.ready()
    assert raised.value.errno == errno.EBADF


def test_the_supervisor_end_reads_whole_lines_and_keeps_a_partial_one(pipe):
    r, w = pipe
    channel = SupervisorChannel(r)
    assert not os.get_blocking(r)
    assert channel.read() == ([], False)
    os.write(w, b"ready\n\nbeat 0.25 GET /slow\nrecy")
    assert channel.read() == (
        [Message("ready"), Message("beat", call_age=0.25, call="GET /slow")],
        False,
    )
    os.write(w, b"cle 7\n")
    os.close(w)
    assert channel.read() == ([Message("recycle", requests=7)], True)
    channel.close()
    with pytest.raises(OSError):
        os.fstat(r)


def test_read_lines_keeps_a_line_until_it_is_whole_and_replaces_bad_utf8(pipe):
    r, w = pipe
    os.set_blocking(r, False)
    os.write(w, b"\xff\xfe\n")
    buffer = bytearray()
    assert read_lines(r, buffer) == (["\ufffd\ufffd"], False)
    assert buffer == b""
    os.write(w, b"b" * 60000)
    assert read_lines(r, buffer) == ([], False)
    os.write(w, b"b" * 10000 + b"\nnext")
    os.close(w)
    assert read_lines(r, buffer) == (["b" * 70000], True)
    assert buffer == b"next"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ready", Message("ready")),
        ("beat", Message("beat")),
        ("beat 1.5 GET /a b", Message("beat", call_age=1.5, call="GET /a b")),
        ("beat 2", Message("beat", call_age=2.0, call="")),
        ("beat soon GET /", Message("beat")),
        ("recycle 12", Message("recycle", requests=12)),
        ("recycle many", Message("recycle")),
        ("recycle", Message("recycle")),
        ("stop now", Message("stop")),
    ],
)
def test_parse_reads_each_kind_and_falls_back_on_malformed_lines(line, message):
    assert parse(line) == message


def test_a_message_carries_nothing_it_was_not_given():
    m = Message("ready")
    assert (m.call_age, m.call, m.requests) == (None, "", 0)
