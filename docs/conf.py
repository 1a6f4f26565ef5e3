"""Sphinx configuration: the Markdown pages of docs/ through MyST, the Python API through autodoc.

Build: ``sphinx-build -W --keep-going -b html docs build/docs`` (``tox -e docs``, ``.ci/run``).
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx

import flask_heat_collector

project = "flask-heat-collector"
release = version = flask_heat_collector.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
myst_heading_anchors = 3  # the GitHub anchors the pages link to (`api.md#get-metrics`)
autodoc_member_order = "bysource"
html_title = f"{project} {release}"


def _sphinx_only(app: Sphinx, docname: str, source: list[str]) -> None:
    """What the pages say for Sphinx alone, so that they stay plain Markdown on GitHub.

    index.md gets a hidden toctree of the pages its list links to; a link to a Markdown file outside
    docs/ (``../bench/results/latest.md``) becomes a download instead of a missing page.
    """
    if docname == "index":
        pages = re.findall(r"^- \[[^]]+\]\(([\w-]+)\.md\)", source[0], re.MULTILINE)
        source[0] += "\n```{toctree}\n:hidden:\n\n" + "\n".join(pages) + "\n```\n"
    source[0] = re.sub(r"\]\((\.\./[^)#\s]+\.md)\)", r"](path:\1)", source[0])


def setup(app: Sphinx) -> None:
    app.connect("source-read", _sphinx_only)
