"""HTTPS with the clients people use: a TLS endpoint offers in ALPN only the HTTP/1.1 it serves.

Twisted Web's ``Site`` offers ``h2`` whenever the ``h2`` package is installed (hypercorn brings it); curl and
browsers then chose HTTP/2, which rolo's channel does not speak, and every request got an empty reply.
"""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import quoteStringArgument, serverFromString

from rolo import Response, route
from rolo.serving.twisted import TwistedGateway

from ..conftest import gateway_for
from ..helpers import in_thread, self_signed_certificate

# Twisted's ssl: endpoint still hands pyOpenSSL its own certificate and key types
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


@route("/hello")
def hello(request):
    return Response(f"hello over {request.scheme}")


@pytest.fixture
def https_port(tmp_path):
    key, certificate = self_signed_certificate(tmp_path)
    site = TwistedGateway(gateway_for(hello))
    key_argument, cert_argument = quoteStringArgument(str(key)), quoteStringArgument(str(certificate))
    description = f"ssl:0:interface=127.0.0.1:privateKey={key_argument}:certKey={cert_argument}"
    port = pytest_twisted.blockon(serverFromString(reactor, description).listen(site))
    yield port.getHost().port
    pytest_twisted.blockon(port.stopListening())
    pytest_twisted.blockon(site.stop())


def test_the_h2_package_is_installed_so_twisted_would_offer_http2():
    # what makes this file's tests mean something: without h2, Twisted Web offers only HTTP/1.1 anyway
    from twisted.web import http

    assert http.H2_ENABLED


@pytest_twisted.ensureDeferred
async def test_alpn_offers_only_http_1_1(https_port):
    def negotiate() -> str | None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2", "http/1.1"])  # what curl and browsers offer
        with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                return tls.selected_alpn_protocol()

    assert await in_thread(negotiate) == "http/1.1"


@pytest_twisted.ensureDeferred
async def test_curl_with_its_defaults(https_port):
    # Debian's curl speaks HTTP/2 and offers it first; -k for the test's self-signed certificate
    command = ["curl", "-sSk", "-w", "\n%{http_version} %{http_code}", f"https://127.0.0.1:{https_port}/hello"]
    done = await in_thread(subprocess.run, command, capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "hello over https\n1.1 200"
