"""The echo server from rolo's WebSocket documentation, as an ASGI application.

Serve it from the repository's root with either server (both come with the test dependencies)::

    .venv/bin/hypercorn examples.asgi_echo:app --bind 127.0.0.1:8000
    .venv/bin/uvicorn examples.asgi_echo:app --port 8000

then talk to it: ``websocat ws://localhost:8000/echo/alice``.
"""

from rolo import Router
from rolo.gateway import Gateway
from rolo.gateway.asgi import AsgiGateway
from rolo.gateway.handlers import RouterHandler

from examples.echo import handler

router = Router()
router.add(handler)

# made at import time, as the servers' commands expect: it binds to no event loop until they call it
app = AsgiGateway(Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)]))
