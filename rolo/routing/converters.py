"""URL converters the router has built in, beyond werkzeug's own."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import BaseConverter, Map

__all__ = ["PortConverter", "RegexConverter"]


class RegexConverter(BaseConverter):
    """Matches a regular expression given in the rule: ``/items/<regex('[a-z]+'):name>``."""

    # any pattern may match "/" (".*" does), so werkzeug must not split the path around it
    part_isolating = False

    def __init__(self, map: Map, *items: Any, **kwargs: Any) -> None:
        super().__init__(map, **kwargs)
        self.regex = items[0]


class PortConverter(BaseConverter):
    """Matches an optional ``:port`` suffix, so that ``localhost<port:port>`` matches both ``localhost`` and
    ``localhost:4566``. The value is the port as an ``int``, or ``None`` when there was none."""

    regex = r"(?::[0-9]{1,5})?"

    def to_python(self, value: str) -> int | None:
        return int(value[1:]) if value else None

    def to_url(self, value: Any) -> str:
        return f":{value}" if value is not None else ""
