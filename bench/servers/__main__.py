"""``python -m bench.servers KIND PORT [--deflate]``: serve one of :data:`bench.servers.PEERS` on
127.0.0.1:PORT until terminated."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import resource

from bench.servers import PEERS

# the module that serves each kind, and the name of its serving function
ENTRY_POINTS = {
    "rolo": ("rolo_app", "serve_twisted"),
    "rolo-metrics": ("rolo_app", "serve_twisted_metrics"),
    "rolo-uvicorn": ("rolo_app", "serve_uvicorn"),
    "rolo-hypercorn": ("rolo_app", "serve_hypercorn"),
    "autobahn": ("autobahn_app", "serve"),
    "twisted-web": ("twisted_web", "serve"),
    "websockets": ("websockets_app", "serve"),
    "aiohttp": ("aiohttp_app", "serve"),
    "uvicorn": ("asgi_app", "serve_uvicorn"),
    "hypercorn": ("asgi_app", "serve_hypercorn"),
    "picows": ("picows_app", "serve"),
    "gunicorn": ("flask_app", "serve"),
}


SLOWDOWN = "BENCH_SLOWDOWN"
"""An environment variable: how many times slower than natively the server runs (under valgrind, for
:mod:`bench.instructions`)."""


def _slow_handler_turns(factor: float) -> None:
    # rolo's reactor waits for the handlers of a turn a bounded time (HandlerTurns' handler_time and
    # turn_limit); in a server slowed down, the bound would end every turn before its handlers block, and
    # the count would measure that path, varying with the machine's load, rather than the native one
    from rolo.websocket.turns import HandlerTurns

    handler_time, turn_limit, handlers_per_turn = HandlerTurns.__init__.__defaults__ or (0.0001, 0.002, 64)
    HandlerTurns.__init__.__defaults__ = (handler_time * factor, turn_limit * factor, handlers_per_turn)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    parser.add_argument("kind", choices=PEERS)
    parser.add_argument("port", type=int)
    parser.add_argument("--deflate", action="store_true", help="accept permessage-deflate when offered")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get(SLOWDOWN):
        _slow_handler_turns(float(os.environ[SLOWDOWN]))
    module, function = ENTRY_POINTS[args.kind]
    serve = getattr(importlib.import_module(f"bench.servers.{module}"), function)
    serve(args.port, args.deflate)


if __name__ == "__main__":
    main()
