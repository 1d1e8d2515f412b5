"""The admission check both servers make before an upgrade reaches a handler."""

from http import HTTPStatus

from rolo.websocket import OriginPolicy
from rolo.websocket.admission import refusal

ONLY_GOOD = OriginPolicy(["https://good.example"])


def test_a_forbidden_origin_is_403_whatever_the_load():
    for accepting, running in ((True, 0), (False, 0), (True, 10)):
        assert refusal("https://evil.example", ONLY_GOOD, accepting, running, 10)[0] == HTTPStatus.FORBIDDEN


def test_shutting_down_or_full_is_503_and_otherwise_taken():
    assert refusal("https://good.example", ONLY_GOOD, False, 0, 10) == (
        HTTPStatus.SERVICE_UNAVAILABLE,
        b"server shutting down\n",
    )
    assert refusal(None, None, True, 10, 10) == (HTTPStatus.SERVICE_UNAVAILABLE, b"too many WebSocket connections\n")
    assert refusal(None, ONLY_GOOD, True, 9, 10) is None
