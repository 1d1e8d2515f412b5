"""Cross-references to Python names that Sphinx's own lookup misses, resolved by importing them.

A reference that the Python domain and intersphinx cannot resolve is imported here, as written or within
the module and class it is written in, and then resolved as:

1. the documented object it is: ``rolo.routing.router.Router`` (what an annotation says) is documented as
   ``rolo.Router``; ``fit_close_reason`` written in ``rolo.websocket.threaded``, which imports it, is
   ``rolo.websocket.frames.fit_close_reason``;
2. the same object under a shorter import path, in an inventory: ``collections.abc.Callable`` for
   ``_collections_abc.Callable``;
3. an instance variable a class's docstring documents (``:ivar handlers:``): the class;
4. a name with no documentation to link to: linked to its project's API page where ``imported_names_api``
   gives one for its package (Twisted's, whose inventory cannot be had offline), shown unlinked otherwise
   (another project's name, or one of rolo's internals, which the reference leaves out).

A name that does not import stays unresolved, so a misspelt or removed name still fails the build.

Sphinx writes a zope interface inside an annotation as its repr (``list[<InterfaceClass
twisted.internet.interfaces.IListeningPort>]``), which it then takes for one name; such an annotation is
resolved here name by name.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext import intersphinx
from zope.interface.interface import InterfaceClass

_MISSING = object()
_INTERFACE = re.compile(r"<InterfaceClass ([\w.]+)>")
_NAME = re.compile(r"[A-Za-z_][\w.]*")
# per build environment, once its documents are read: documented objects by (id, last name), kept alive
_DOCUMENTED: dict[int, dict[tuple[int, str], tuple[str, Any]]] = {}


def imported(name: str) -> tuple[Any, list[str]]:
    """The object ``name`` names and the module path it was reached by (``_MISSING`` if none)."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return _MISSING, []
    for split in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute, _MISSING)
            if found is _MISSING:
                return _MISSING, []
        return found, parts[:split]
    return _MISSING, []


def shorter_names(name: str) -> Iterator[str]:
    """The names of the same object through the modules above the one ``name`` goes through, nearest
    first: ``a.b.c.Name`` gives ``a.b.Name`` if module ``a.b`` holds the same object as ``Name``."""
    found, module = imported(name)
    attributes = name.split(".")[len(module) :]
    if found is _MISSING or not attributes:
        return
    first = getattr(importlib.import_module(".".join(module)), attributes[0])
    for length in range(len(module) - 1, 0, -1):
        try:
            parent = importlib.import_module(".".join(module[:length]))
        except ImportError:
            continue
        if getattr(parent, attributes[0], _MISSING) is first:
            yield ".".join(module[:length] + attributes)


def _candidates(node: pending_xref, target: str) -> list[str]:
    """The full names a reference may mean: as written, within its module and class, and within the
    module that defines that class (where its docstring was written)."""
    target = target.lstrip(".~")
    module, cls = node.get("py:module"), node.get("py:class")
    names = [target]
    if module:
        names.append(f"{module}.{target}")
        if cls:
            names.append(f"{module}.{cls}.{target}")
            owner, _ = imported(f"{module}.{cls}")
            if owner is not _MISSING and getattr(owner, "__module__", module) != module:
                names.append(f"{owner.__module__}.{target}")
    return names


def _documented(env: BuildEnvironment) -> dict[tuple[int, str], tuple[str, Any]]:
    """The objects the Python domain documents, by identity and last name: ``(id(obj), "Hub")`` for
    ``rolo.websocket.Hub`` (the last name too, so that equal constants of two names never match)."""
    documented = _DOCUMENTED.setdefault(id(env), {})
    if not documented:
        for name, entry in list(env.domains["py"].objects.items()):
            if entry.aliased or entry.objtype == "module":
                continue
            found, _ = imported(name)
            if found is not _MISSING:
                documented[(id(found), name.rpartition(".")[2])] = (name, found)
    return documented


def _api_page(base: str, name: str, found: Any) -> str:
    """The pydoctor page of ``name`` under ``base``: a module, class or zope interface has a page of its own,
    anything else an anchor on its parent's page."""
    if isinstance(found, (type, InterfaceClass)) or inspect.ismodule(found):
        return f"{base}/{name}.html"
    parent, _, last = name.rpartition(".")
    return f"{base}/{parent}.html#{last}"


def _resolve_as(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element, name: str) -> Any:
    """Resolve ``node`` as a reference to ``name``, in this documentation or an inventory."""
    written = node["reftarget"]
    node["reftarget"] = name
    try:
        return env.domains["py"].resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
        ) or intersphinx.missing_reference(app, env, node, contnode)
    finally:
        node["reftarget"] = written


def _instance_variable(name: str) -> str | None:
    """The class of which ``name`` is an instance variable it documents (``:ivar handlers:`` in the
    docstring of ``WebSocketHost`` for ``rolo.websocket.host.WebSocketHost.handlers``), or ``None``."""
    owner_name, _, variable = name.rpartition(".")
    owner, _ = imported(owner_name)
    if isinstance(owner, type) and re.search(rf"^\s*:ivar {re.escape(variable)}:", inspect.getdoc(owner) or "", re.M):
        return owner_name
    return None


def _resolve_name(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element, target: str) -> Any:
    for name in _candidates(node, target):
        found, _ = imported(name)
        if found is _MISSING and node["reftype"] == "attr" and (owner := _instance_variable(name)):
            name, found = owner, imported(owner)[0]  # documented in its class's docstring: a link to it
        if found is _MISSING:
            continue
        known = _documented(env).get((id(found), name.rpartition(".")[2]))
        for other in ([known[0]] if known else []) + list(shorter_names(name)):
            if (reference := _resolve_as(app, env, node, contnode, other)) is not None:
                return reference
        package = name.split(".")[0]
        if package in app.config.imported_names_api:
            reference = nodes.reference("", "", internal=False)
            reference["refuri"] = _api_page(app.config.imported_names_api[package], name, found)
            reference += contnode
            return reference
        return contnode
    return None


def _resolve_annotation(app: Sphinx, env: BuildEnvironment, node: pending_xref, text: str) -> Any:
    """An annotation Sphinx took for one name, resolved name by name; ``None`` if a name does not resolve."""
    resolved = nodes.inline()
    position = 0
    for match in _NAME.finditer(text):
        resolved += nodes.Text(text[position : match.start()])
        name = match.group()
        part = nodes.literal(name, name)
        found = _resolve_as(app, env, node, part, name) or _resolve_name(app, env, node, part, name)
        if found is None and (name == "None" or hasattr(builtins, name)):
            found = part  # as Sphinx leaves a built-in it has no inventory for
        elif found is None:
            return None
        resolved += found
        position = match.end()
    resolved += nodes.Text(text[position:])
    return resolved


def resolve(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if _INTERFACE.search(target):
        return _resolve_annotation(app, env, node, _INTERFACE.sub(r"\1", target))
    return _resolve_name(app, env, node, contnode, target)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("imported_names_api", {}, "env")
    app.connect("env-updated", lambda app, env: _DOCUMENTED.pop(id(env), None))
    app.connect("missing-reference", resolve, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
