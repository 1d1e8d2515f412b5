"""WsgiGateway: a gateway's HTTP side under werkzeug's test client and a real wsgiref server."""

from __future__ import annotations

import http.client
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from werkzeug.test import Client

from rolo import Response, Router, route
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler, WerkzeugExceptionHandler
from rolo.gateway.wsgi import WsgiGateway


@route("/items/<int:item_id>", methods=["GET", "PUT"])
def item(request, item_id):
    if request.method == "PUT":
        return {"id": item_id, "body": request.get_data(as_text=True)}
    return {"id": item_id, "q": request.args.get("q")}


@route("/fail")
def fail(request):
    raise RuntimeError("handler failed")


@route("/headers")
def headers(request):
    return {"names": list(request.headers.keys())}


@route("/stream")
def stream(request):
    return Response(iter([b"one ", b"two"]))


def app() -> WsgiGateway:
    router = Router()
    router.add([item, fail, headers, stream])
    return WsgiGateway(
        Gateway(
            request_handlers=[RouterHandler(router, respond_not_found=True)],
            exception_handlers=[WerkzeugExceptionHandler()],
        )
    )


def test_wsgi_gateway_with_the_test_client():
    client = Client(app())
    assert client.get("/items/3?q=x").get_json() == {"id": 3, "q": "x"}
    assert client.put("/items/4", data="payload").get_json() == {"id": 4, "body": "payload"}
    assert client.get("/nowhere").status_code == 404
    assert client.post("/items/3").status_code == 405
    response = client.get("/fail")
    assert (response.status_code, response.data) == (500, b"")
    assert client.get("/stream").data == b"one two"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_wsgi_gateway_on_a_wsgiref_server():
    server = make_server("127.0.0.1", 0, app(), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("PUT", "/items/9", body=b"data", headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"id": 9, "body": "data"}')
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", "/fail")
        response = conn.getresponse()
        assert (response.status, response.read()) == (500, b"")
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
