"""The documentation site: Sphinx with MyST Markdown pages and the Furo theme (docs/contributing.md says why).

`make docs` builds it into docs/_build/html with every warning an error (`-W --keep-going -n`): a broken
link, a missing page, a page in no table of contents or an unresolved reference fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc imports app/, db/ and loadtests/ from this checkout

project = "iobench"
author = "the iobench authors"
copyright = "the iobench authors, MIT licence"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "readme-sections.toml"]

# Headings get GitHub's anchors (#does-the-model-explain-each-case), so a link written for the README's
# renderer and one written for the site point at the same place.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# The committed run reports (docs/runs/) are included as written for GitHub: their first heading is
# the page's title and their sections may skip a level.
suppress_warnings = ["myst.header"]

# autodoc: the settings and the catalogue's types, from their docstrings. Importing them opens no
# connection (the drivers are imported by name only when the app starts).
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
# Members are named one by one (docs/api.md): autodoc's scan of a pydantic model's members (:members:)
# leaves pydantic unable to build FastAPI's models afterwards (Sphinx 9.0, pydantic 2.14).
autodoc_default_options: dict[str, bool] = {}
# Types from libraries this site has no inventory of (no network at build time): named, not linked.
nitpick_ignore_regex = [(r"py:.*", r"(pydantic|pydantic_settings|pathlib|typing|collections|datetime|enum)(\..*)?"),
                        (r"py:.*", r"(str|int|float|bool|dict|list|tuple|None|Path|Literal|Any)")]

html_theme = "furo"
html_title = "iobench"
html_static_path: list[str] = []
