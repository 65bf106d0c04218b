#!/usr/bin/env python
"""Build the docs site with Sphinx + myst-nb + sphinx-book-theme (`make docs`): the committed, executed notebooks
rendered as they are (nothing is executed at docs time), and API pages from the package's docstrings.

    python scripts/docs.py [--out _docs] [--src _proc/docs] [--jobs 2]

Steps:
1. stage the notebooks into `--src`: cells marked `#| hide`, `#| default_exp` and `nbdev_export()` cells are dropped,
   `#|` directive lines removed, and every code cell is tagged for the page's CSS: `nb-source` (exported into the
   package), `nb-test` (a test: `test_eq`, `test_fail`, `assert` ...), `nb-example` (anything else), `nb-skipped`
   (a `#| slow` / `#| gpu` cell, not executed in CI's setting); a library page gets a link to its API page;
2. write one API page per exported module (`automodule`, members from `__all__`, parameters from the docments);
3. write the landing page (nbs/index.ipynb: the notebook map) with the navigation tree of every page;
4. run `sphinx-build` with docs/conf.py.
`names in backticks` that are documented objects become links to their API entry (docs/_ext/medseg_docs.py).
"""
from __future__ import annotations
import argparse, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / 'nbs'
sys.path.insert(0, str(REPO / 'scripts'))
from nbexec import all_notebooks, _directives, _cell_source   # noqa: E402

TEST_CALL = re.compile(r'^\s*(test_\w+\(|assert\b|test_fail\b)', re.M)
SECTIONS = [('Library', lambda rel: '/' not in rel), ('Demos', lambda rel: rel.startswith('demos/')),
            ('Experiments', lambda rel: rel.startswith('experiments/'))]


def module_of(nb: dict) -> str | None:
    "The module a notebook exports to (`#| default_exp data.__init__` -> 'medseg_lab.data'), or None."
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        d = _directives(_cell_source(c))
        if 'default_exp' in d:
            name = d['default_exp'].split()[0]
            return 'medseg_lab.' + re.sub(r'\.__init__$', '', name)
    return None


def cell_kind(cell) -> tuple[str | None, list]:
    "(tag for the page, myst-nb tags) of a code cell; tag None: the cell is left out of the page."
    src = _cell_source(cell)
    d = _directives(src)
    if 'hide' in d or 'default_exp' in d or 'nbdev_export' + '(' in src: return None, []
    if d.get('include', '').lower() == 'false': return None, []
    extra = []
    if d.get('echo', '').lower() == 'false': extra.append('remove-input')
    if d.get('output', '').lower() == 'false': extra.append('remove-output')
    if d.get('eval', '').lower() == 'false' or 'slow' in d or 'gpu' in d: kind = 'nb-skipped'
    elif any(k in d for k in ('export', 'exports', 'exporti')): kind = 'nb-source'
    elif TEST_CALL.search(src): kind = 'nb-test'
    else: kind = 'nb-example'
    return kind, extra


def stage_notebook(src: Path, dest: Path, api_doc: str | None) -> dict:
    "Write the page version of notebook `src` to `dest`; returns what the docs test checks (images, title)."
    nb = json.loads(src.read_text(encoding='utf-8'))
    cells, images = [], 0
    rel = src.relative_to(NBS).as_posix()
    for c in nb['cells']:
        if c['cell_type'] == 'code':
            kind, extra = cell_kind(c)
            if kind is None: continue
            d = _directives(_cell_source(c))
            c['source'] = '\n'.join(l for l in _cell_source(c).splitlines() if not re.match(r'^\s*#\|', l)).strip('\n')
            c['metadata'] = dict(tags=[kind] + extra + [t for t in c.get('metadata', {}).get('tags', [])
                                                          if t == 'parameters'])
            if kind == 'nb-skipped':
                flag = 'slow' if 'slow' in d else 'gpu' if 'gpu' in d else 'eval: false'
                cmd = (f'; `make reproduce NB=nbs/{rel}` runs it' if flag == 'slow' else '')
                c['outputs'] = [dict(output_type='stream', name='stdout',
                                     text=f'(a `#| {flag}` cell: not executed in the CI setting of these pages{cmd})\n')]
            if 'remove-output' not in extra:
                images += sum(1 for o in c.get('outputs', []) for k in o.get('data', {})
                              if k in ('image/png', 'image/jpeg', 'image/svg+xml'))
            if not c['source'] and not c.get('outputs'): continue
        cells.append(c)
    title = next((m.group(1).strip() for c in cells if c['cell_type'] == 'markdown'
                  for m in [re.search(r'^#\s+(.+)$', _cell_source(c), re.M)] if m), src.stem)
    if api_doc:
        i = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), -1) + 1
        depth = '../' * rel.count('/')
        cells.insert(i, dict(cell_type='markdown', id='apilink', metadata={},
                             source=f'API reference: [{api_doc.split("/")[-1]}]({depth}{api_doc}.md)'))
    if rel == 'index.ipynb':   # the README's links are relative to the repository root (nbs/10_unet.ipynb)
        for c in cells:
            if c['cell_type'] == 'markdown':
                c['source'] = re.sub(r'\]\(nbs/([^)\s]+)\)', r'](\1)', _cell_source(c))
    nb['cells'] = cells
    nb['metadata'] = {k: v for k, v in nb.get('metadata', {}).items() if k in ('kernelspec', 'language_info')}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1), encoding='utf-8')
    return dict(notebook=rel, doc=rel[:-len('.ipynb')], images=images, title=title)


def api_page(module: str, notebook: str, title: str) -> str:
    return (f"# {module}\n\nExported from the notebook [{title}](../{notebook}) ({notebook}), where every public name "
            f"below is explained and tested.\n\n```{{eval-rst}}\n.. automodule:: {module}\n   :members:\n```\n")


def stage(src_dir: Path) -> dict:
    "Write every page source into `src_dir`; returns the page list (also written as pages.json)."
    if src_dir.exists(): shutil.rmtree(src_dir)
    (src_dir / 'api').mkdir(parents=True)
    pages, modules = [], []
    for nb_path in all_notebooks():
        rel = nb_path.relative_to(NBS).as_posix()
        nb = json.loads(nb_path.read_text(encoding='utf-8'))
        mod = module_of(nb)
        api_doc = f'api/{mod}' if mod else None
        info = stage_notebook(nb_path, src_dir / rel, api_doc)
        if mod:
            modules.append((mod, rel))
            (src_dir / 'api' / f'{mod}.md').write_text(api_page(mod, rel, info['title']), encoding='utf-8')
        info['module'] = mod
        pages.append(info)
    api_index = ('# API reference\n\nOne page per module; each is exported from the notebook named on it.\n\n'
                 + '\n'.join(f'- [`{m}`]({m}.md) — from [{nb}](../{nb})' for m, nb in modules)
                 + '\n\n```{toctree}\n:hidden:\n' + '\n'.join(m for m, _ in modules) + '\n```\n')
    (src_dir / 'api' / 'index.md').write_text(api_index, encoding='utf-8')
    # the landing page: nbs/index.ipynb (the notebook map) with the navigation tree of every page
    idx = json.loads((src_dir / 'index.ipynb').read_text(encoding='utf-8'))
    tree = ''
    for caption, keep in SECTIONS:
        docs = [p['doc'] for p in pages if keep(p['notebook']) and p['doc'] != 'index']
        if docs: tree += f'```{{toctree}}\n:hidden:\n:caption: {caption}\n\n' + '\n'.join(docs) + '\n```\n\n'
    tree += '```{toctree}\n:hidden:\n:caption: API reference\n\napi/index\n```\n'
    idx['cells'].append(dict(cell_type='markdown', id='navtree', metadata={}, source=tree))
    (src_dir / 'index.ipynb').write_text(json.dumps(idx, indent=1), encoding='utf-8')
    pages += [dict(notebook=None, doc=f'api/{m}', images=0, title=m, module=m) for m, _ in modules]
    pages.append(dict(notebook=None, doc='api/index', images=0, title='API reference', module=None))
    (src_dir / 'pages.json').write_text(json.dumps(pages, indent=1))
    unexecuted = [p['notebook'] for p in pages if p['notebook'] and
                  'medseg_lab' not in json.loads((NBS / p['notebook']).read_text()).get('metadata', {})]
    if unexecuted:
        print(f"docs: {len(unexecuted)} of {sum(1 for p in pages if p['notebook'])} notebooks carry no executed outputs "
              f"(`make execute` writes them): {' '.join(unexecuted[:8])}{' ...' if len(unexecuted) > 8 else ''}")
    return dict(pages=pages)


def build(out: Path, src_dir: Path, jobs: int = 2) -> int:
    t0 = time.perf_counter()
    stage(src_dir)
    shutil.copy(REPO / 'docs' / 'conf.py', src_dir / 'conf.py')
    for sub in ('_static', '_ext'):
        shutil.copytree(REPO / 'docs' / sub, src_dir / sub, dirs_exist_ok=True)
    for extra in ('images', 'results'):    # figures and results files the pages link to
        if (NBS / extra).is_dir(): shutil.copytree(NBS / extra, src_dir / extra, dirs_exist_ok=True)
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', MEDSEG_DOCS_REPO=str(REPO))
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-j', str(jobs), '-d', str(src_dir / '.doctrees'),
           str(src_dir), str(out)]
    p = subprocess.run(cmd, env=env, cwd=REPO)
    if p.returncode == 0:
        shutil.copy(src_dir / 'pages.json', out / 'pages.json')
        print(f"docs: {out}/index.html ({time.perf_counter() - t0:.0f} s)")
    return p.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default=str(REPO / '_docs'))
    ap.add_argument('--src', default=str(REPO / '_proc' / 'docs'), help='staging folder of the page sources')
    ap.add_argument('--jobs', type=int, default=2)
    a = ap.parse_args(argv)
    return build(Path(a.out).resolve(), Path(a.src).resolve(), a.jobs)


if __name__ == '__main__':
    sys.exit(main())
