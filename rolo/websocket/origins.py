"""Which ``Origin`` may open a WebSocket: the defence against cross-site WebSocket hijacking.

Browsers send the page's origin with every upgrade request and let any page connect anywhere, so a server
that authenticates by cookie must refuse origins it does not know. Servers check the request against an
allow-list before any handler runs, and answer ``403 Forbidden`` to an origin not on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["OriginPolicy"]


class OriginPolicy:
    """An allow-list of origins, each an exact origin or a pattern with ``*`` wildcards.

    ``OriginPolicy(["https://example.com", "https://*.example.com"])`` allows those origins and no other.
    Matching ignores case (scheme and host are case-insensitive) and covers the whole value, port included:
    ``https://example.com`` does not allow ``https://example.com:8443``. A request without an ``Origin``
    header comes from a client that is not a browser and is allowed; a page with an opaque origin sends
    ``null``, which is allowed only when ``"null"`` is listed.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = tuple(allowed)
        # only "*" is special; "(?!)" matches nothing, for an empty list
        self._pattern = re.compile(
            "|".join(re.escape(origin.lower()).replace(r"\*", ".*") for origin in self.allowed) or "(?!)"
        )

    def allows(self, origin: str | None) -> bool:
        """Whether a request whose ``Origin`` header is ``origin`` (``None`` when absent) may connect."""
        if origin is None:
            return True
        return self._pattern.fullmatch(origin.strip().lower()) is not None
