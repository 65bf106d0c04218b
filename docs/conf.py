"""Sphinx configuration of the medseg_lab docs site (built by scripts/docs.py, `make docs`).

The pages are the committed notebooks, rendered with the outputs they were committed with (myst-nb,
`nb_execution_mode = "off"`: nothing runs at docs time), plus API pages from the package's docstrings (autodoc).
"""
import configparser, os, sys
from pathlib import Path

REPO = Path(os.environ.get('MEDSEG_DOCS_REPO', Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent / '_ext'))
_cfg = configparser.ConfigParser(delimiters=['=']); _cfg.read(REPO / 'settings.ini', encoding='utf-8')
_ini = _cfg['DEFAULT']

project = _ini['lib_name']
author = _ini['author']
copyright = _ini['copyright']
release = version = _ini['version']

extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.viewcode', 'medseg_docs']
exclude_patterns = ['_build', '**.ipynb_checkpoints', 'pages.json', '.doctrees']
root_doc = 'index'

# notebooks: rendered as committed, never executed here
nb_execution_mode = 'off'
nb_output_stderr = 'show'
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'colon_fence', 'html_image']
myst_heading_anchors = 3
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure', 'toc.not_included',
                     'autodoc.import_object']

# API pages
autodoc_default_options = {'members': True, 'member-order': 'bysource'}
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False

html_theme = 'sphinx_book_theme'
html_title = 'medseg_lab'
html_static_path = ['_static']
html_css_files = ['medseg.css']
html_theme_options = {
    'repository_url': _ini['git_url'],
    'use_repository_button': True,
    'show_navbar_depth': 1,
    'home_page_in_toc': True,
    'show_toc_level': 2,
}
html_show_sourcelink = False
