"""A TwistedGateway leaves what the process made before it started out of later garbage collections."""

from __future__ import annotations

import subprocess
import sys

from .twistd import REPO

# in a process of its own: the test process's own heap was frozen by the first gateway any test started
SCRIPT = """
import gc
from twisted.internet import reactor
from rolo.serving.twisted import TwistedGateway
from tests.conftest import gateway_for

assert gc.get_freeze_count() == 0
unfrozen = reactor.listenTCP(0, TwistedGateway(gateway_for(), freeze_heap=False), interface="127.0.0.1")
assert gc.get_freeze_count() == 0, "freeze_heap=False froze the heap"
first = reactor.listenTCP(0, TwistedGateway(gateway_for()), interface="127.0.0.1")
frozen = gc.get_freeze_count()
made_since = [[] for _ in range(1000)]
second = reactor.listenTCP(0, TwistedGateway(gateway_for()), interface="127.0.0.1")
print("FROZEN", frozen, gc.get_freeze_count())
"""


def test_the_first_gateway_to_listen_freezes_the_heap_once_per_process_unless_told_not_to():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    _, frozen, frozen_later = next(line for line in result.stdout.splitlines() if line.startswith("FROZEN ")).split()
    assert int(frozen) > 1000  # the imports of Twisted, Autobahn, werkzeug and rolo, at least
    assert frozen_later == frozen  # the second gateway froze nothing more: what came since is collected as usual
