"""``twistd rolo --workers``: a real supervisor, real worker processes, real clients and real signals.

Each worker answers ``/pid`` (and the WebSocket ``/ws/pid``) with its pid, so a test sees which process
served it. ``SO_REUSEPORT`` spreads connections over the workers by a hash of their addresses: a few
connections from fresh client ports reach both.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import websocket as wsclient

from rolo.serving.twisted.tap import Options
from rolo.serving.twisted.workers import cpu_count
from tests.helpers import self_signed_certificate

from .test_twistd import close_frame, sigint_ignored
from .twistd import REPO, Twistd, twistd_command

LOOPBACK = "tcp:0:interface=127.0.0.1"
APP = ("--app", "tests.serving.apps:router")
ATTEMPTS = 64  # connections to find a given worker: each misses it with probability 1/2
START = 30.0  # seconds a worker may take to start serving: interpreters start slowly on a busy machine


@pytest.fixture
def supervisor() -> Iterator[Callable[..., Twistd]]:
    """``supervisor(*args)`` starts ``twistd -n rolo --app tests.serving.apps:router --workers 2 *args``
    (``twistd -n rolo *args`` if ``args`` name the app; or ``command``) and waits until it serves; a
    supervisor the test left running is killed, with its workers."""
    started: list[Twistd] = []

    def start(*args: str, command: list[str] | None = None, env: dict[str, str] | None = None) -> Twistd:
        if command is None and "--app" not in args:
            args = (*APP, "--workers", "2", *args)
        server = Twistd(*args, command=command, env=env)
        started.append(server)
        server.wait_for(r"rolo listening at ", timeout=START)
        return server

    yield start
    for server in started:
        pids = worker_pids(server)
        server.kill()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def worker_pids(server: Twistd) -> dict[int, int]:
    """The pid of each worker serving now, by worker number, from the supervisor's log."""
    pids: dict[int, int] = {}
    for line in server.lines:
        for number, pid in re.findall(r"worker (\d+) \(pid (\d+)\) serving", line):
            pids[int(number)] = int(pid)
    return pids


def get(url: str, **kwargs) -> str:
    with urllib.request.urlopen(url, timeout=10, **kwargs) as response:
        return response.read().decode()


def pids_answering(url: str, wanted: set[int], **kwargs) -> set[int]:
    """Request ``url`` (a new connection each time) until every pid of ``wanted`` answered (or
    :data:`ATTEMPTS` requests went by): the pids that answered."""
    seen: set[int] = set()
    for _ in range(ATTEMPTS):
        seen.add(int(get(url, **kwargs)))
        if wanted <= seen:
            break
    return seen


def wait_for_exit(pid: int, timeout: float = 10.0) -> None:
    """Wait until process ``pid`` (not a child of ours) has exited."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([descriptor], [], [], timeout)
        assert ready, f"process {pid} still runs {timeout}s later"
    finally:
        os.close(descriptor)


@pytest.mark.slow
def test_both_workers_serve_every_endpoint_and_the_log_is_one_stream(supervisor, tmp_path):
    key, certificate = self_signed_certificate(tmp_path)
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}"
    server = supervisor("--listen", LOOPBACK, "--listen", tls, "--pin-workers")
    port = server.port()
    tls_port = int(server.wait_for(r"rolo listening at 127\.0\.0\.1:(\d+) \(ssl:").group(1))
    pids = worker_pids(server)
    assert sorted(pids) == [1, 2]
    assert os.getpid() not in pids.values()

    assert pids_answering(f"http://127.0.0.1:{port}/pid", set(pids.values())) == set(pids.values())
    # TLS too, each worker over a port of its own on the same address
    context = ssl.create_default_context(cafile=str(certificate))
    context.check_hostname = False
    assert pids_answering(f"https://127.0.0.1:{tls_port}/pid", set(pids.values()), context=context) == set(
        pids.values()
    )
    ws = wsclient.create_connection(f"wss://127.0.0.1:{tls_port}/ws/pid", timeout=10, sslopt={"context": context})
    assert int(ws.recv()) in pids.values()
    ws.close()

    # where it listens is said once for each endpoint, by the supervisor
    assert sum("rolo listening at" in line for line in server.lines) == 2
    # each worker's request lines reach the supervisor's output under its number, as formatted there
    for number in pids:
        server.wait_for(
            rf"\[worker {number} rolo\.serving\.twisted\.http#info\] "
            rf"GET /pid from tcp4:127\.0\.0\.1:\d+: 200 in \d+\.\d{{3}}s"
        )
    # pinned: worker i on the i-th CPU we may use
    cpus = sorted(os.sched_getaffinity(0))
    for number, pid in pids.items():
        assert os.sched_getaffinity(pid) == {cpus[(number - 1) % len(cpus)]}

    # and a handler's traceback, with its exception
    assert "Traceback" not in server.output
    with pytest.raises(urllib.error.HTTPError) as failed:
        get(f"http://127.0.0.1:{port}/boom")
    assert failed.value.code == 500
    server.wait_for(r"\[worker \d rolo\.gateway#error\] exception while handling")
    server.wait_for(r"builtins\.RuntimeError: no luck today")
    assert server.stop() == 0


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(supervisor):
    server = supervisor("--listen", LOOPBACK)
    port = server.port()
    pids = worker_pids(server)
    killed, other = pids[1], pids[2]

    os.kill(killed, signal.SIGKILL)
    server.wait_for(rf"worker 1 \(pid {killed}\) was killed by signal 9 \(SIGKILL\); starting it again in 0\.1s")
    # its socket left the group with it: every connection is answered meanwhile, by the other worker (or
    # by the new one, once it serves)
    assert killed not in {int(get(f"http://127.0.0.1:{port}/pid")) for _ in range(8)}

    restarted = int(server.wait_for(rf"worker 1 \(pid (?!{killed}\))(\d+)\) serving", timeout=START).group(1))
    assert pids_answering(f"http://127.0.0.1:{port}/pid", {restarted, other}) == {restarted, other}
    assert server.stop() == 0


def _kind(line: str) -> str:
    """What kind of log line ``line`` is: its system and namespace in brackets and the first word after
    them, numbers left out (``[worker N rolo.serving.twisted.http#info] GET``); its time, if any, too."""
    bracket = line.index("[")
    return re.sub(r"\d+", "N", line[bracket:].split("] ", 1)[0] + "] " + line.split("] ", 1)[1].split(" ", 1)[0])


@pytest.mark.slow
def test_the_deployment_guide_shows_the_lines_a_supervisor_logs_as_its_workers_start(supervisor):
    # its sample left out each worker's twistd start-up lines, and named the workers' namespace for the
    # listening line, which is the service's
    guide = (REPO / "docs" / "deployment.rst").read_text()
    sample = guide.split("worker 2 killed and started again::\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    server = supervisor("--listen", LOOPBACK, "--pin-workers")
    port = server.port()
    get(f"http://127.0.0.1:{port}/hello/bob")
    killed = worker_pids(server)[2]
    os.kill(killed, signal.SIGKILL)
    server.wait_for(rf"worker 2 \(pid (?!{killed}\))\d+\) serving", timeout=START)
    logged = server.lines[:]
    assert server.stop() == 0
    # the same lines, by kind and number, whichever worker's come first
    assert sorted(map(_kind, logged)) == sorted(map(_kind, sample)), "\n".join(logged)


@pytest.mark.slow
def test_sigterm_closes_websockets_on_every_worker_with_1001_and_exits_0(supervisor):
    server = supervisor("--listen", LOOPBACK, "--grace-period", "5")
    port = server.port()
    pids = set(worker_pids(server).values())
    sockets: list[wsclient.WebSocket] = []
    seen: set[int] = set()
    while seen != pids:
        assert len(sockets) < ATTEMPTS
        ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/ws/pid", timeout=10)
        sockets.append(ws)
        seen.add(int(ws.recv()))

    server.process.send_signal(signal.SIGTERM)
    for ws in sockets:
        assert close_frame(ws) == (1001, b"server shutting down")
        ws.close()
    assert server.wait(timeout=15) == 0
    for number in (1, 2):
        server.wait_for(
            rf"\[worker {number} rolo\.serving\.twisted\.\w+#info\] "
            r"WebSocket closed by the server /ws/pid .*: code 1001"
        )
        server.wait_for(rf"worker {number} \(pid \d+\) exited with status 0")
    assert "Traceback" not in server.output


@pytest.mark.slow
def test_a_unix_socket_is_handed_to_both_workers(supervisor, tmp_path):
    path = tmp_path / "rolo.sock"
    server = supervisor("--listen", f"unix:{path}:mode=600")
    server.wait_for(rf"rolo listening at unix:{path} \(unix:{path}:mode=600\)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the workers keep the endpoint's mode
    pids = worker_pids(server)

    def pid_over_unix() -> int:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(path))
            client.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b"".join(iter(lambda: client.recv(4096), b""))
        assert reply.startswith(b"HTTP/1.1 200 ")
        return int(reply.rpartition(b"\r\n\r\n")[2])

    # both accept from the one socket: with the worker that answered stopped, the other one answers
    first = pid_over_unix()
    os.kill(first, signal.SIGSTOP)
    try:
        second = pid_over_unix()
    finally:
        os.kill(first, signal.SIGCONT)
    assert {first, second} == set(pids.values())

    # a worker that stops on its own leaves the socket's file to the others, and is started again
    os.kill(pids[1], signal.SIGTERM)
    # an info line: a graceful stop is how the deployment guide recycles workers, not a fault to warn of
    server.wait_for(rf"workers#info\] worker 1 \(pid {pids[1]}\) exited with status 0; starting it again")
    assert path.exists()
    assert pid_over_unix() != pids[1]
    server.wait_for(rf"worker 1 \(pid (?!{pids[1]}\))\d+\) serving", timeout=START)

    assert server.stop() == 0
    assert not path.exists()  # the supervisor removes it once all are gone


@pytest.mark.slow
def test_a_worker_that_does_not_stop_is_killed(supervisor):
    server = supervisor("--listen", LOOPBACK, "--grace-period", "0")
    pids = worker_pids(server)
    os.kill(pids[1], signal.SIGSTOP)  # it cannot see its pipe close
    server.process.send_signal(signal.SIGTERM)
    server.wait_for(rf"worker 1 \(pid {pids[1]}\) still running 5\.0s after shutdown began; killing it")
    server.wait_for(rf"worker 1 \(pid {pids[1]}\) was killed by signal 9 \(SIGKILL\)")
    assert server.wait() == 0
    server.wait_for(rf"worker 2 \(pid {pids[2]}\) exited with status 0")


@pytest.mark.slow
def test_workers_stop_when_the_supervisor_dies(supervisor):
    server = supervisor("--listen", LOOPBACK)
    pids = worker_pids(server)
    server.process.kill()  # SIGKILL: nothing of the supervisor's runs any more
    for pid in pids.values():
        wait_for_exit(pid)  # its pipe closed: each worker stopped as on SIGTERM


@pytest.mark.slow
def test_a_broken_app_fails_fast_with_one_line_and_status_1():
    result = subprocess.run(
        [twistd_command(), "-n", "--pidfile=", "rolo", "--app", "tests.serving.nosuch:router", "--listen", LOOPBACK,
         "--workers", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "#critical]" in line]
    assert len(errors) == 1, output
    assert errors[0].endswith(
        "before serving: rolo: --app 'tests.serving.nosuch:router': cannot import tests.serving.nosuch: "
        "ModuleNotFoundError: No module named 'tests.serving.nosuch'"
    )
    assert "rolo: worker 1 (pid " in errors[0] or "rolo: worker 2 (pid " in errors[0]


@pytest.mark.slow
def test_a_worker_that_keeps_failing_to_start_makes_the_supervisor_give_up(supervisor, tmp_path):
    broken = tmp_path / "broken"
    server = supervisor(
        "--app", "tests.serving.apps:fragile_factory", "--listen", LOOPBACK, "--workers", "2",
        env={"ROLO_TEST_BROKEN": str(broken)},
    )
    pids = worker_pids(server)
    broken.touch()  # from now on, the app does not load
    os.kill(pids[1], signal.SIGKILL)
    assert server.wait(timeout=3 * START) == 1
    restarts = re.findall(r"worker 1 \(pid \d+\) .*; starting it again in (\d\.\d)s", server.output)
    delays = [float(delay) for delay in restarts]
    # the first for the killed worker, which had served; then doubling for each start that failed
    assert delays == [0.1, 0.2, 0.4]
    errors = [line for line in server.lines if "#critical]" in line]
    assert len(errors) == 1 and errors[0].endswith(
        "exited with status 1 before serving, 3 times in a row: rolo: --app 'tests.serving.apps:fragile_factory': "
        "calling fragile_factory() raised RuntimeError: broken on purpose"
    )
    server.wait_for(rf"worker 2 \(pid {pids[2]}\) exited with status 0")


@pytest.mark.slow
def test_run_workers_from_python(supervisor):
    # told no endpoint, it listens where twistd rolo does: on this machine only (port 0 for 8000 here)
    with sigint_ignored():  # as under ./dev test &: the supervisor must not inherit it (see test_twistd)
        server = supervisor(command=[sys.executable, "-m", "tests.serving.workers_script"])
    port = server.port()
    assert f"rolo listening at 127.0.0.1:{port} (tcp:0:interface=127.0.0.1)" in server.output
    pids = set(worker_pids(server).values())
    assert len(pids) == 2
    assert pids_answering(f"http://127.0.0.1:{port}/pid", pids) == pids
    assert server.stop(signal.SIGINT) == 0


def test_options():
    options = Options()
    options.parseOptions([*APP, "--workers", "auto", "--pin-workers", "--max-queue", "3"])
    assert options["workers"] == cpu_count()
    assert options["pin-workers"]
    assert options.arguments == [*APP, "--workers", "auto", "--pin-workers", "--max-queue", "3"]
    # a mistake ends twistd with one line (see test_twistd_messages)
    with pytest.raises(SystemExit, match=r"^rolo: --pin-workers needs --workers"):
        Options().parseOptions([*APP, "--pin-workers"])
    with pytest.raises(SystemExit, match=r"^rolo: --workers must be a positive integer or auto, not '0'"):
        Options().parseOptions([*APP, "--workers", "0"])


def test_other_kinds_of_endpoint_are_refused():
    # a systemd: endpoint adopts the socket a service manager passed as descriptor 3 (Twisted reads the
    # environment as it is imported, hence a process of its own): nothing a supervisor can share
    script = (
        "import os, socket; passed = socket.socket(); os.dup2(passed.fileno(), 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='http'); "
        "from rolo.serving.twisted.sharing import reserve; reserve('systemd:domain=INET:index=0')"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stderr.splitlines()[-1] == (
        "ValueError: --workers serves tcp, tcp6, ssl and unix endpoints, not 'systemd:domain=INET:index=0'"
    )
