"""The tables of server settings, made from their declarations (:func:`rolo.settings.setting`).

``.. settings-table:: rolo.settings.ServerSettings`` is a table of that dataclass's settings: name, default
(with its unit), meaning and ``twistd rolo`` option, each read from the field and its metadata, so the
documentation says what the code declares. ``:own:`` leaves out the fields the class inherits.

``.. twistd-help::`` is what ``twistd rolo --help`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import Field, fields
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from sphinx.application import Sphinx

from rolo.serving.twisted.tap import Options, _option  # _option: the one place an option is named

_HEADER = ("setting", "default", "meaning", "twistd rolo")
_WIDTHS = (18, 12, 55, 20)


def default_text(declared: Field[Any]) -> str:
    """A setting's default as a reader writes it: ``512 KiB``, ``10 s``, ``True``."""
    value, unit = declared.default, declared.metadata["unit"]
    if value is None or isinstance(value, bool):
        return str(value)
    if unit == "bytes":
        for size, name in ((1024 * 1024, "MiB"), (1024, "KiB")):
            if value >= size and value % size == 0:
                return f"{value // size} {name}"
        return f"{value} bytes"
    if unit == "seconds":
        return f"{value:g} s"
    return str(value)


def _row(*cells: nodes.Node) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += nodes.paragraph("", "", cell)
        row += entry
    return row


class SettingsTable(Directive):
    required_arguments = 1
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {"own": directives.flag}

    def run(self) -> list[nodes.Node]:
        module_name, _, class_name = self.arguments[0].rpartition(".")
        settings = getattr(importlib.import_module(module_name), class_name)
        declared = fields(settings)
        if "own" in self.options:
            bases = [base for base in settings.__mro__[1:] if hasattr(base, "__dataclass_fields__")]
            inherited = {field.name for base in bases for field in fields(base)}
            declared = tuple(field for field in declared if field.name not in inherited)

        group = nodes.tgroup(cols=len(_HEADER))
        for width in _WIDTHS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(*(nodes.Text(title) for title in _HEADER))
        group += head
        body = nodes.tbody()
        for field in declared:
            body += _row(
                nodes.literal(field.name, field.name),
                nodes.Text(default_text(field)),  # with the unit
                nodes.Text(field.metadata["help"]),
                nodes.literal("", f"--{_option(field)}"),
            )
        group += body
        table = nodes.table(classes=["settings"])
        table += group
        return [table]


class TwistdHelp(Directive):
    def run(self) -> list[nodes.Node]:
        text = Options().getUsage(width=88)
        return [nodes.literal_block(text, text, language="text")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("settings-table", SettingsTable)
    app.add_directive("twistd-help", TwistdHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
