"""The request target (RFC 9112 3.2): which of its four forms a request has, and the path and query a
server routes it by.

Servers parse the request line; what they hand on as its target is only known not to contain spaces.
:func:`split_target` takes it apart, or refuses it with :class:`InvalidTarget`, which a server answers
with ``400 Bad Request``.
"""

from __future__ import annotations

import re

__all__ = ["InvalidTarget", "is_valid_authority", "split_target"]

# RFC 9110 4.2 and 7.2, RFC 3986 3.2.2: uri-host [ ":" port ], the host an IP literal or a non-empty reg-name
# (userinfo, which RFC 9110 4.2.4 deprecates, is refused with the rest)
_AUTHORITY = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]*)?"
_VALID_AUTHORITY = re.compile(_AUTHORITY)
# RFC 3986 3.1 and 4.3: absolute-URI with an authority, which is what an http(s) URI has
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://" + _AUTHORITY + rb"(?P<rest>[/?].*)?", re.DOTALL)


class InvalidTarget(ValueError):
    """A request target that fits none of its forms (RFC 9112 3.2): the request is a bad one (400)."""


def is_valid_authority(authority: bytes) -> bool:
    """Whether ``authority`` is ``host[:port]`` as a ``Host`` header or an absolute URI gives it (RFC 9110
    7.2): an IP literal in brackets or a non-empty registered name, and digits after a colon."""
    return _VALID_AUTHORITY.fullmatch(authority) is not None


def split_target(target: bytes, method: bytes | str) -> tuple[bytes, bytes]:
    """The path (percent-encoded, as sent) and the query (without ``?``) a request target routes by.

    - origin-form, ``/a/b?x=1``: as it is;
    - absolute-form, ``http://example.com:8080/a/b?x=1`` (as sent to proxies): its path, or ``/`` if it
      has none, and its query (RFC 9112 3.2.2 asks a server to take the request as for that path);
    - asterisk-form, ``*``, for ``OPTIONS`` only: the path ``*``;
    - authority-form, ``example.com:443``, for ``CONNECT`` only: the path ``/``.

    :param target: the request target as the request line gave it
    :param method: the request's method, which decides whether the last two forms are allowed
    :raises InvalidTarget: if the target has none of these forms
    """
    if isinstance(method, str):
        method = method.encode("latin-1")
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query
    absolute = _ABSOLUTE_FORM.fullmatch(target)
    if absolute is not None:
        path, _, query = (absolute.group("rest") or b"").partition(b"?")
        return path or b"/", query
    if target == b"*" and method == b"OPTIONS":
        return b"*", b""
    if method == b"CONNECT" and is_valid_authority(target):
        return b"/", b""
    raise InvalidTarget(f"the request target {target[:100]!r} is neither a path nor an absolute URI")
