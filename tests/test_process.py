"""ragft.process: a child in a session of its own (as vLLM is) dies with its supervisor, even
when the supervisor is killed with SIGKILL and cannot stop it; SIGTERM as an exit that runs
`finally` blocks; a port check that a stopped server's TIME_WAIT connections do not fool; a stop
that escalates to SIGKILL, and reaches the whole group when asked."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ragft.process import free_ports, port_is_free, sigterm_as_exit, stop_process

SUPERVISOR = textwrap.dedent(
    """
    import subprocess, sys, time
    from ragft.process import die_with_parent_preexec
    armed = {"preexec_fn": die_with_parent_preexec()} if sys.argv[1] == "armed" else {}
    child = subprocess.Popen(["sleep", "120"], start_new_session=True, **armed)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("armed", [True, False])
def test_a_child_dies_with_its_killed_supervisor_only_when_armed(armed: bool) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, "armed" if armed else "plain"], stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    child = 0
    try:
        child = int(supervisor.stdout.readline())
        assert _alive(child)
        supervisor.kill()
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(child) is not armed
    finally:
        supervisor.kill()
        if child and _alive(child):
            psutil.Process(child).kill()


def test_sigterm_in_the_block_runs_its_finally_blocks() -> None:
    """What lets `ragft freshness` write its documents back when it is stopped with SIGTERM."""
    cleaned = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, sigterm_as_exit():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives first
        finally:
            cleaned.append(True)
    assert cleaned == [True] and stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # put back after the block


def _time_wait_on_a_stopped_server() -> int:
    """A port whose server accepted a connection, closed it first (so the server's side sits in
    TIME_WAIT, as after a stopped vLLM), and stopped listening."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = int(server.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()
        client.recv(1)  # the server's FIN has arrived
        client.close()
    return port


def test_a_port_is_taken_only_while_something_listens_on_it() -> None:
    port = _time_wait_on_a_stopped_server()
    states = psutil.net_connections("tcp4")
    assert any(c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT for c in states)
    assert port_is_free("127.0.0.1", port)
    with socket.create_server(("127.0.0.1", port)):  # a restarted server binds at once, as vLLM does
        assert not port_is_free("127.0.0.1", port)


# A shell that ignores SIGTERM, with a `sleep` child that does not.
STUBBORN = "trap '' TERM; sleep 120 & echo $!; wait"


def test_ports_chosen_together_are_distinct_and_free() -> None:
    """Servers a test starts side by side each need a port of their own."""
    ports = free_ports(16)
    assert len(set(ports)) == 16
    assert all(port_is_free("127.0.0.1", port) for port in ports)


@pytest.mark.parametrize("group", [False, True])
def test_stop_process_kills_what_ignores_sigterm_and_with_group_its_children_too(group: bool) -> None:
    shell = subprocess.Popen(["sh", "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert shell.stdout is not None
    child = int(shell.stdout.readline())
    try:
        started = time.monotonic()
        stop_process(shell, timeout=1, group=group)
        assert shell.returncode == -signal.SIGKILL and time.monotonic() - started >= 1
        time.sleep(0.2)
        assert _alive(child) is not group
        stop_process(shell, timeout=1, group=group)  # already stopped: nothing to do
    finally:
        if _alive(child):
            psutil.Process(child).kill()
