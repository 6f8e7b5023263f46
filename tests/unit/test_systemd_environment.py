"""What juggler reads of systemd's environment (socket activation, sd_notify) and what it
sends, without systemd: real sockets, the parsing and the datagrams."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from juggler import activation, sd_notify
from juggler.activation import ActivationError, Passed, take_environment
from juggler.sd_notify import Notifier, NotifyError

PID = 4242


def test_nothing_passed_is_no_activation():
    assert take_environment({}, PID) is None


def test_sockets_passed_to_this_process_start_at_3_with_their_names():
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "web:admin"}
    assert take_environment(env, PID) == [Passed(3, "web"), Passed(4, "admin")]
    assert env == {}, "the variables are removed, so that no child takes the sockets"


def test_without_names_the_sockets_are_unnamed():
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(PID)}
    assert take_environment(env, PID) == [Passed(3, "")]


def test_sockets_passed_to_another_process_are_not_taken_and_the_variables_go():
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(PID + 1), "OTHER": "x"}
    assert take_environment(env, PID) is None
    assert env == {"OTHER": "x"}


def test_zero_sockets_is_no_activation():
    assert take_environment({"LISTEN_FDS": "0", "LISTEN_PID": str(PID)}, PID) is None


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"LISTEN_FDS": "1"}, "LISTEN_FDS is set but LISTEN_PID is not"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "me"}, "LISTEN_PID is not a process id: 'me'"),
        ({"LISTEN_FDS": "two", "LISTEN_PID": str(PID)}, "LISTEN_FDS is not a number: 'two'"),
        ({"LISTEN_FDS": "-1", "LISTEN_PID": str(PID)}, "LISTEN_FDS is negative: -1"),
        (
            {"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "web"},
            "LISTEN_FDNAMES has 1 name(s) for 2 descriptor(s): 'web'",
        ),
    ],
)
def test_values_that_make_no_sense_are_refused_with_what_is_wrong(env: dict[str, str], error: str):
    with pytest.raises(ActivationError) as exc:
        take_environment(env, PID)
    assert str(exc.value) == error


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def test_a_listening_tcp_socket_is_adopted_and_closed_on_exec(listening: socket.socket):
    fd = os.dup(listening.fileno())
    os.set_inheritable(fd, True)
    adopted = activation.adopt(Passed(fd, "web"))
    try:
        assert adopted.fileno() == fd
        assert adopted.getsockname() == listening.getsockname()
        assert not adopted.get_inheritable()
    finally:
        adopted.close()


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (
            lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
            "socket activation: descriptor {fd} (x) is not listening",
        ),
        (
            lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            "socket activation: descriptor {fd} (x) is not a stream socket (SOCK_DGRAM)",
        ),
        (
            lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),
            "socket activation: descriptor {fd} (x) is a AF_NETLINK socket, not TCP or UNIX",
        ),
    ],
)
def test_a_socket_juggler_cannot_serve_is_refused_and_left_open(make, error):  # type: ignore[no-untyped-def]
    with make() as sock:
        with pytest.raises(ActivationError) as exc:
            activation.adopt(Passed(sock.fileno(), "x"))
        assert str(exc.value) == error.format(fd=sock.fileno())
        os.fstat(sock.fileno())  # still open


def test_a_file_is_not_a_socket(tmp_path):  # type: ignore[no-untyped-def]
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(ActivationError, match=r"descriptor \d+ is not a socket$"):
            activation.adopt(Passed(f.fileno(), ""))


def test_a_closed_descriptor_is_not_open():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(ActivationError, match=rf"descriptor {r} is not open: Bad file"):
        activation.adopt(Passed(r, ""))


# -- sd_notify -------------------------------------------------------------------------------


def test_a_message_is_one_line_per_field_and_values_stay_on_their_line():
    assert sd_notify.message("READY=1", sd_notify.status("2 workers\nserving")) == (
        b"READY=1\nSTATUS=2 workers serving\n"
    )


def test_reloading_carries_the_monotonic_time_in_microseconds():
    assert sd_notify.reloading(now_ns=5_000_123_456) == (
        "RELOADING=1",
        "MONOTONIC_USEC=5000123",
    )


def test_addresses_are_paths_or_abstract_names():
    assert sd_notify.address("/run/systemd/notify") == "/run/systemd/notify"
    assert sd_notify.address("@juggler/notify") == b"\0juggler/notify"
    with pytest.raises(NotifyError, match="neither a path nor an abstract socket"):
        sd_notify.address("vsock:2:1234")


def test_the_watchdog_is_half_its_timeout_for_this_process_only():
    assert sd_notify.watchdog_period("3000000", None, PID) == 1.5
    assert sd_notify.watchdog_period("3000000", str(PID), PID) == 1.5
    assert sd_notify.watchdog_period("3000000", str(PID + 1), PID) is None
    assert sd_notify.watchdog_period(None, None, PID) is None
    with pytest.raises(NotifyError, match="WATCHDOG_USEC is not a number: 'soon'"):
        sd_notify.watchdog_period("soon", None, PID)
    with pytest.raises(NotifyError, match="WATCHDOG_USEC must be positive, got 0"):
        sd_notify.watchdog_period("0", None, PID)


def test_the_environment_is_read_once_and_emptied():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(PID)}
    notifier = Notifier.from_environment(env, PID)
    assert notifier is not None and notifier.target == b"\0x" and notifier.watchdog == 0.5
    assert env == {}
    assert Notifier.from_environment({}, PID) is None


@pytest.fixture
def listener(tmp_path) -> Iterator[tuple[socket.socket, str]]:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def test_datagrams_reach_a_path_socket(listener: tuple[socket.socket, str]):
    sock, path = listener
    notifier = Notifier(path, None)
    assert notifier.send("READY=1", "STATUS=serving")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving\n"
    notifier.close()


def test_datagrams_reach_an_abstract_socket():
    name = f"juggler-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier(sd_notify.address("@" + name), None)
        assert notifier.send("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1\n"
        notifier.close()


def test_a_socket_that_is_gone_is_logged_once_and_never_raises(
    listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
):
    sock, path = listener
    sock.close()
    os.unlink(path)
    notifier = Notifier(path, None)
    assert not notifier.send("READY=1")
    assert not notifier.send("STATUS=x")
    warnings = [r for r in caplog.records if "Cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
    assert path in warnings[0].getMessage()


def test_the_watchdog_is_kept_alive_when_due_and_not_before(
    listener: tuple[socket.socket, str],
):
    sock, path = listener
    notifier = Notifier(path, 2.0)
    assert notifier.watchdog_due is not None
    start = notifier.watchdog_due
    notifier.keep_alive(start)
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    assert notifier.watchdog_wait(start) == 2.0
    notifier.keep_alive(start + 1.0)
    notifier.send("STATUS=marker")
    assert sock.recv(4096) == b"STATUS=marker\n", "nothing sent before it was due"
    notifier.keep_alive(start + 2.0)
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    notifier.close()
