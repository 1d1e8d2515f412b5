"""One peer sending floods of tiny frames (pings whose pongs it reads, a message in 2-byte fragments)
does not keep the server from answering everyone else: frames are parsed in time linear in what was read,
and one connection's share of a turn of the reactor is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from .support import client_frame, open_websocket

OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_PING = 0x0, 0x1, 0x2, 0x9

FLOODS = {
    # 200,000 empty pings, 1.1 MiB; the attacker reads the pongs, so writing never stops its reads
    "pings": (client_frame(OPCODE_PING, b"") * 200_000, "/echo"),
    # a message of 768 KiB in 393,216 fragments of 2 bytes, 3 MiB on the wire
    "fragments": (
        client_frame(OPCODE_BINARY, b"ab", fin=False) + client_frame(OPCODE_CONTINUATION, b"cd", fin=False) * 393_215,
        "/stuck",
    ),
}


@pytest.mark.parametrize("flood", FLOODS.values(), ids=FLOODS.keys())
def test_a_flood_of_tiny_frames_leaves_the_others_answered(server_process, flood):
    data, path = flood
    server = server_process()
    probe = open_websocket(server.address, "/echo")

    def round_trip() -> float:
        started = time.monotonic()
        probe.sendall(client_frame(OPCODE_TEXT, b"probe"))
        received = b""
        while b"probe" not in received:
            # each recv waits at most open_websocket's 10 s timeout (TimeoutError); a closed connection
            # returns b"" at once, forever: either fails the test rather than hanging it
            chunk = probe.recv(64)
            assert chunk, "the server closed the probe's connection"
            received += chunk
        return time.monotonic() - started

    round_trip()  # warm up
    attacker = open_websocket(server.address, path)
    sent = threading.Event()

    def attack() -> None:
        attacker.sendall(data)
        sent.set()

    def read_pongs() -> None:
        try:
            while attacker.recv(1 << 20):
                pass
        except OSError:
            pass

    threading.Thread(target=read_pongs, daemon=True).start()
    threading.Thread(target=attack, daemon=True).start()
    times = sorted(round_trip() for _ in range(21))
    sent.wait(60)
    print(
        f"a flood of {len(data) / 2**20:.1f} MiB of tiny frames: 21 probe echoes meanwhile took "
        f"{times[10] * 1000:.0f} ms (median), {times[-1] * 1000:.0f} ms (slowest)"
    )
    attacker.close()
    probe.close()
    # each of the flood's reads (64 KiB, 8,000 to 11,000 frames) used to be parsed whole, in time
    # growing with the square of its frames: 250-350 ms a read on a loaded 2-CPU machine
    assert times[10] < 0.1
