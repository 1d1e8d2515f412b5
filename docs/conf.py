"""Sphinx configuration of rolo's documentation: ``./dev docs`` builds it into ``docs/_build/html``.

The build is nitpicky and the test suite runs it with warnings as errors (``tests/test_docs.py``), so a
reference to a name that does not exist fails it. It never uses the network:

- Python's names link to docs.python.org through the inventory of Debian's ``python3-doc`` package, which
  ``./dev`` installs, when it is there;
- no other inventory (Twisted's, werkzeug's, Autobahn's) can be had offline, so their names are checked by
  importing them instead, and Twisted's link to its API pages (``_ext/imported_names.py``).
"""

import sys
from pathlib import Path

import rolo

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

project = "rolo"
author = "the rolo authors"
copyright = "the rolo authors; Apache-2.0"
release = version = rolo.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "imported_names",
    "public_modules",
    "settings_table",
]
# bench/: the tables ./dev bench writes, which benchmarks.rst includes rather than being pages
exclude_patterns = ["_build", "bench"]
html_theme = "furo"
html_title = f"rolo {release}"
html_static_path = ["_static"]
html_css_files = ["rolo.css"]
highlight_language = "text"  # literal blocks (::) are logs and transcripts; code says its language

nitpicky = True
nitpick_ignore = [
    # werkzeug's BaseConverter.__init__, the signature of rolo's converters, annotates with names that
    # werkzeug imports for type checkers only
    ("py:class", "t.Any"),
    ("py:class", "Map"),
]

autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # an override without a docstring of its own is not rolo's to document

PYTHON_INVENTORY = Path("/usr/share/doc/python3/html/objects.inv")
intersphinx_mapping = {}
if PYTHON_INVENTORY.exists():
    intersphinx_mapping["python"] = ("https://docs.python.org/3", str(PYTHON_INVENTORY))
intersphinx_timeout = 1  # never the network: every inventory is a local file
imported_names_api = {"twisted": "https://docs.twisted.org/en/stable/api"}
