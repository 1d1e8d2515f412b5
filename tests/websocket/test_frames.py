"""The frame reader for the commonest frames, and unmasking, against what a client sends and what
Autobahn's masker gives."""

from __future__ import annotations

import pytest
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given
from hypothesis import strategies as st

from rolo.websocket.frames import NOT_SIMPLE, WHOLE_FRAME_LIMIT, read_data_frame, unmask

from tests.hardening.support import client_frame

MASK = b"\x37\xfa\x21\x3d"  # client_frame's


@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_unmask_is_autobahns_masker(payload, mask):
    assert unmask(payload, mask) == create_xor_masker(mask, len(payload)).process(payload)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 0xFFFF, 0x10000])
@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_a_whole_message_in_one_masked_frame_is_read(opcode, length):
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    data = b"junk" + client_frame(opcode, payload) + client_frame(0x9, b"next")
    read = read_data_frame(data, 4, 0)
    assert read is not None and read != NOT_SIMPLE
    read_opcode, start, end, mask = read
    assert (read_opcode, mask) == (opcode, MASK)
    assert unmask(data[start:end], mask) == payload
    assert data[end:] == client_frame(0x9, b"next")


@pytest.mark.parametrize("length", [1, 200, 70_000])
def test_part_of_a_frame_is_waited_for_unless_it_is_large(length):
    frame = client_frame(0x2, b"x" * length)
    for cut in {1, 2, 3, 7, len(frame) - 1} - {len(frame)}:
        expected = NOT_SIMPLE if length > WHOLE_FRAME_LIMIT and cut >= 10 else None
        assert read_data_frame(frame[:cut], 0, 0) == expected, cut


OTHERS = {
    "ping": client_frame(0x9, b"p"),
    "close": client_frame(0x8, b"\x03\xe8"),
    "first fragment": client_frame(0x1, b"a", fin=False),
    "continuation": client_frame(0x0, b"a"),
    "compressed": client_frame(0x1, b"a", compressed=True),
    "unmasked": bytes((0x81, 0x01)) + b"a",
    "reserved opcode": bytes((0x83,)) + client_frame(0x1, b"a")[1:],
    "length 5 in 16 bits": bytes((0x81, 0x80 | 126, 0, 5)) + MASK + b"hello",
    "length 5 in 64 bits": bytes((0x82, 0x80 | 127)) + (5).to_bytes(8, "big") + MASK + b"hello",
    "length with its top bit": bytes((0x82, 0x80 | 127)) + (1 << 63).to_bytes(8, "big") + MASK,
}


@pytest.mark.parametrize("frame", OTHERS.values(), ids=OTHERS.keys())
def test_any_other_frame_is_left_to_a_full_parser(frame):
    assert read_data_frame(frame, 0, 0) == NOT_SIMPLE


def test_a_frame_over_the_size_limit_is_left_to_a_full_parser_which_refuses_it():
    assert read_data_frame(client_frame(0x2, b"x" * 101), 0, 100) == NOT_SIMPLE
    assert read_data_frame(client_frame(0x2, b"x" * 100), 0, 100) not in (None, NOT_SIMPLE)
