"""Sphinx configuration of the vaekit site: the series, built from the committed notebooks.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -b html docs build/site

Nothing is executed (``nb_execution_mode = "off"``): the pages show the outputs the notebooks
were committed with. ``docs/_ext/vaekit_site.py`` prepares the notebooks for the web and writes
the home page's generated parts; see its docstring.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

# The repository the launch buttons (Binder, Colab) and the "source" links point at.
# Override without editing this file: VAEKIT_REPOSITORY_URL=https://github.com/owner/name
vaekit_repository_url = os.environ.get(
    "VAEKIT_REPOSITORY_URL", "https://github.com/vaekit/vaekit"
)
vaekit_repository_branch = os.environ.get("VAEKIT_REPOSITORY_BRANCH", "main")
vaekit_notebooks_dir = "../notebooks"

project = "vaekit"
author = "the vaekit authors"
copyright = "the vaekit authors, MIT License"
html_title = "vaekit: latent-variable generative models"

extensions = [
    "myst_nb",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site (_static/mathjax), no CDN
    "vaekit_site",
]

root_doc = "index"
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "_generated/*.md"]
suppress_warnings = [
    "myst.header"
]  # notebooks number their sections with ## after one #

# The committed notebooks, as executed: never run them here.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "remove"
nb_ipywidgets_js = {}  # widget outputs become stills (vaekit_site.py): no widget manager from a CDN
nb_render_markdown_format = "myst"  # markdown outputs: tables and maths render
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["vaekit.css"]
html_theme_options = {
    "repository_url": vaekit_repository_url,
    "repository_branch": vaekit_repository_branch,
    "path_to_docs": "",  # pages notebooks/NN_name map to notebooks/NN_name.ipynb in the repository
    "use_repository_button": True,
    "use_download_button": False,  # the notebooks are in the repository (the GitHub button)
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_copy_source = False
