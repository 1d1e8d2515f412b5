"""The frame reader for the commonest frames, and unmasking, against what a client sends and what
Autobahn's masker gives."""

from __future__ import annotations

import pytest
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given
from hypothesis import strategies as st

from rolo.websocket.frames import FIN, NOT_SIMPLE, RSV, read_frame, unmask
from tests.hardening.support import client_frame

MASK = b"\x37\xfa\x21\x3d"  # client_frame's


@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_unmask_is_autobahns_masker(payload, mask):
    assert unmask(payload, mask) == create_xor_masker(mask, len(payload)).process(payload)


def test_unmask_is_autobahns_masker_at_every_length_around_its_tables():
    # up to 128 bytes the mask is repeated by a multiplication and cut to the length; beyond, by bytes
    mask = b"\xff\x80\x01\x7e"
    for length in range(140):
        payload = bytes((7 * i + 3) % 256 for i in range(length))
        assert unmask(payload, mask) == create_xor_masker(mask, length).process(payload), length


@pytest.mark.parametrize("length", [0, 1, 125, 126, 0xFFFF, 0x10000])
@pytest.mark.parametrize(("opcode", "fin"), [(0x1, True), (0x2, True), (0x0, False), (0x9, True), (0x2, False)])
def test_a_masked_frame_is_read(opcode, fin, length):
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    data = b"junk" + client_frame(opcode, payload, fin=fin) + client_frame(0x9, b"next")
    read = read_frame(data, 4)
    assert read is not None and read != NOT_SIMPLE
    first, start, end, mask = read
    assert (first & 0x0F, bool(first & FIN), first & RSV, mask) == (opcode, fin, 0, MASK)
    assert unmask(data[start:end], mask) == payload
    assert data[end:] == client_frame(0x9, b"next")


def test_the_extension_bits_are_read_for_the_caller_to_judge():
    first, *_ = read_frame(client_frame(0x1, b"a", compressed=True), 0)
    assert first & RSV == 0x40


@pytest.mark.parametrize("length", [1, 200, 70_000])
def test_a_head_not_whole_is_waited_for_and_a_payload_not_whole_is_told(length):
    frame = client_frame(0x2, b"x" * length)
    head = 6 if length < 126 else 8 if length < 0x10000 else 14
    for cut in range(1, head):
        assert read_frame(frame[:cut], 0) is None, cut
    for cut in {head, len(frame) - 1}:
        assert read_frame(frame[:cut], 0)[2] == len(frame)  # where its payload ends, not yet received


BROKEN = {
    "unmasked": bytes((0x81, 0x01)) + b"a",
    "length 5 in 16 bits": bytes((0x81, 0x80 | 126, 0, 5)) + MASK + b"hello",
    "length 5 in 64 bits": bytes((0x82, 0x80 | 127)) + (5).to_bytes(8, "big") + MASK + b"hello",
    "length with its top bit": bytes((0x82, 0x80 | 127)) + (1 << 63).to_bytes(8, "big") + MASK,
}


@pytest.mark.parametrize("frame", BROKEN.values(), ids=BROKEN.keys())
def test_a_frame_against_the_rules_is_left_to_a_full_parser(frame):
    assert read_frame(frame, 0) == NOT_SIMPLE
