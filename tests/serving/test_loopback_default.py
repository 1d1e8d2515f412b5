"""Told nowhere to listen, a server listens on the loopback interface only, and its log says how to listen on
every interface (``twistd rolo`` without ``--listen``, ``listen(app)``, ``run_in_thread(app)``, the examples
and ``./dev echo``)."""

from __future__ import annotations

import logging
import re
import socket

import pytest
import pytest_twisted

from rolo.serving.twisted import embed, listen
from rolo.serving.twisted.service import DEFAULT_ENDPOINT
from rolo.serving.twisted.tap import Options
from tests.documented import Running

from .apps import router


def test_the_default_is_port_8000_of_the_loopback_interface():
    assert DEFAULT_ENDPOINT == "tcp:8000:interface=127.0.0.1"
    options = Options()
    options.parseOptions(["--app", "m:a"])
    assert options["listen"] == [DEFAULT_ENDPOINT]


def listening_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("rolo listening at ")]


@pytest_twisted.ensureDeferred
async def test_listen_told_no_endpoint_listens_on_loopback_and_says_how_to_listen_on_every_one(monkeypatch, caplog):
    # the default endpoint, on a free port rather than 8000
    monkeypatch.setattr(embed, "DEFAULT_ENDPOINT", DEFAULT_ENDPOINT.replace(":8000:", ":0:"))
    with caplog.at_level(logging.INFO, logger="rolo"):
        service = await listen(router)
        try:
            address = service.ports[0].getHost()
        finally:
            await service.stopService()
    assert address.host == "127.0.0.1"
    assert listening_lines(caplog.records) == [
        f"rolo listening at 127.0.0.1:{address.port} (tcp:0:interface=127.0.0.1): this machine only; "
        "to listen on every interface, use the endpoint tcp:0 (twistd rolo --listen tcp:0)"
    ]


@pytest_twisted.ensureDeferred
async def test_an_endpoint_on_every_interface_says_nothing_more(caplog):
    with caplog.at_level(logging.INFO, logger="rolo"):
        service = await listen(router, "tcp:0")
        try:
            port = service.ports[0].getHost().port
        finally:
            await service.stopService()
    assert listening_lines(caplog.records) == [f"rolo listening at 0.0.0.0:{port} (tcp:0)"]


def test_an_example_listens_on_loopback_and_says_so():
    server = Running(["python", "examples/echo.py", "0"])
    try:
        line = server.wait_for(r"rolo listening at .*").group(0)
    finally:
        server.stop()
    assert re.fullmatch(
        r"rolo listening at 127\.0\.0\.1:\d+ \(tcp:0:interface=127\.0\.0\.1\): this machine only; "
        r"to listen on every interface, use the endpoint tcp:0 \(twistd rolo --listen tcp:0\)",
        line,
    ), line


@pytest.mark.parametrize(
    ("command", "example"),
    [(["./dev", "echo", "abc"], "echo"), (["python", "examples/asgi_echo.py", "abc"], "asgi_echo")],
)
def test_an_example_given_a_port_that_is_not_a_number_says_so_in_one_line(command, example):
    # each printed int()'s traceback (asgi_echo.py until it took its port as the others do)
    server = Running(command)
    assert server.rest(timeout=60) == [
        f"usage: python examples/{example}.py [PORT]: the port is a number (0 picks a free one), not 'abc'"
    ]
    assert server.process.wait(10) == 1


def test_the_asgi_example_listens_on_the_loopback_address_only():
    # it listened on every interface: a socket bound to 127.0.0.1 is not reached at 127.0.0.2, one bound to
    # every interface is
    server = Running(["python", "examples/asgi_echo.py", "0"])
    try:
        port = int(server.wait_for(r"echo server on ws://localhost:(\d+)/").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        try:
            socket.create_connection(("127.0.0.2", port), timeout=10).close()
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("the ASGI example is reached at 127.0.0.2")
    finally:
        server.stop()
