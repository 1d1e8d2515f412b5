"""The API reference documents each public object once, under the shortest public path that exports it.

``.. public-module:: rolo.websocket.hub`` is ``automodule`` with ``:members:`` set to the names of the
module's ``__all__`` that no package above it exports too: ``Hub`` is exported by ``rolo.websocket``, so it
is documented there as ``rolo.websocket.Hub``, and ``rolo.websocket.hub`` shows the rest. A reference to
it by its other path still resolves (see ``imported_names``). The option ``:undoc-members:`` is passed on.

A public class or function without a docstring is a warning, which fails the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging

_MISSING = object()
LOG = logging.getLogger(__name__)


def own_names(module_name: str) -> list[str]:
    """The names of ``module_name.__all__`` whose objects no package above it exports."""
    module = importlib.import_module(module_name)
    parts = module_name.split(".")
    parents = [importlib.import_module(".".join(parts[:length])) for length in range(1, len(parts))]
    return [
        name
        for name in getattr(module, "__all__", ())
        if not any(
            name in getattr(parent, "__all__", ()) and getattr(parent, name, _MISSING) is getattr(module, name)
            for parent in parents
        )
    ]


def undocumented(module_name: str, names: list[str]) -> list[str]:
    """Those of ``names``, classes and functions of ``module_name``, that have no docstring of their own (a
    dataclass's made-up one, ``Name(field, ...)``, is none)."""
    module = importlib.import_module(module_name)
    missing = []
    for name in names:
        found = getattr(module, name)
        if inspect.isclass(found) or inspect.isfunction(found):
            doc = found.__doc__ or ""
            if not doc.strip() or (dataclasses.is_dataclass(found) and doc.startswith(f"{found.__name__}(")):
                missing.append(name)
    return missing


class PublicModule(Directive):
    required_arguments = 1
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {"undoc-members": directives.flag}

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        names = own_names(module_name)
        for name in undocumented(module_name, names):
            where = (self.state.document.settings.env.docname, self.lineno)
            LOG.warning("%s.%s is public and has no docstring", module_name, name, location=where)
        lines = [f".. automodule:: {module_name}"]
        if names:
            lines.append(f"   :members: {', '.join(names)}")
        lines.extend(f"   :{option}:" for option in self.options)
        container = nodes.section()
        container.document = self.state.document
        source = self.state.document.current_source
        self.state.nested_parse(StringList(lines, source), self.content_offset, container, match_titles=True)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("public-module", PublicModule)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
