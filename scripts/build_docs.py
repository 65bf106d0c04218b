#!/usr/bin/env python
"""Build the static docs site: execute the notebooks, render them to HTML with nbconvert, write a navigation index.

    python scripts/build_docs.py [--out _docs] [--workers 1] [--no-execute] [NOTEBOOK ...]

Quarto cannot be installed offline here, so instead of nbdev_docs this renders the executed notebooks themselves:
- execution: papermill with the `medseg_lab` kernel, under `xvfb-run` when there is no display; cells tagged `#| slow`, `#| gpu` (without
  CUDA) or `#| eval: false` are left unexecuted, as nbdev_test does; `#| gui` cells (napari) run: medseg_lab.viz
  starts Xvfb itself when there is no display, or falls back to plotly;
- figures: matplotlib inline PNGs; plotly as static PNGs through kaleido and Debian's Chromium (`PLOTLY_RENDERER=png`,
  `BROWSER_PATH`), so pages are light, work without JavaScript and the images can go into the README; without a
  working kaleido the pages embed plotly.js instead (interactive, heavier);
- rendering: cells marked `#| hide` are dropped, `#|` directive lines removed, links to `.ipynb` become `.html`, live
  ipywidgets (which need a kernel) are replaced by a note, and every page gets a navigation bar;
- `index.html` lists every page with its title, tagline, status and execution time; nbs/index.ipynb becomes
  `overview.html`.
Exit status 1 when a notebook failed to execute (its page is still written, showing the error).
"""
from __future__ import annotations
import argparse, html, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / 'nbs'
SKIP_TAGS = ('slow', 'gpu')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'


def default_notebooks() -> list[Path]:
    "Every notebook of the site: nbs/*.ipynb and nbs/demos/*.ipynb (experiments run through `make run`)."
    return sorted(NBS.glob('*.ipynb')) + sorted((NBS / 'demos').glob('*.ipynb'))


def _directives(source: str) -> dict:
    "nbdev cell directives (`#| name value`) of a cell source."
    out = {}
    for line in source.splitlines():
        m = re.match(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', line)
        if m: out[m.group(1)] = m.group(2).strip()
        elif line.strip(): break
    return out


def _cuda() -> bool:
    try:
        import torch; return torch.cuda.is_available()
    except Exception: return False


def _skip_cell(cell, cuda: bool) -> bool:
    d = _directives(cell.source)
    if d.get('eval', '').lower() == 'false': return True
    return any(t in d and not (t == 'gpu' and cuda) for t in SKIP_TAGS)


def plotly_png_ok() -> bool:
    "Can kaleido write a PNG here (it needs a Chromium)? Checked in a subprocess with a time limit."
    code = "import plotly.graph_objects as go; print(len(go.Figure(go.Scatter(y=[1, 2])).to_image(format='png')))"
    try:
        p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, env=_kernel_env(False))
        return p.returncode == 0 and p.stdout.strip().isdigit()
    except Exception: return False


def _kernel_env(png: bool) -> dict:
    env = dict(os.environ)
    env['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'   # the Makefile exports Agg, which hides figures
    env.setdefault('OMP_NUM_THREADS', '1'); env.setdefault('MKL_NUM_THREADS', '1')
    for b in ('/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'):
        if Path(b).exists(): env.setdefault('BROWSER_PATH', b); break
    env['PLOTLY_RENDERER'] = 'png' if png else 'notebook'
    return env


def execute(src: Path, kernel: str, timeout: int, png: bool) -> tuple:
    "Execute `src` with papermill (slow/gpu cells left out) in its folder; returns (notebook, status, seconds, message)."
    import nbformat, tempfile
    nb = nbformat.read(src, as_version=4)
    cuda = _cuda()
    for c in nb.cells:   # papermill runs every code cell: hide the skipped ones as raw cells, restored below
        if c.cell_type == 'code' and _skip_cell(c, cuda):
            c.cell_type = 'raw'; c.metadata['docs_skipped'] = True; c.pop('outputs', None); c.pop('execution_count', None)
    with tempfile.TemporaryDirectory() as tmp:
        src_tmp, out_tmp = Path(tmp) / src.name, Path(tmp) / ('out_' + src.name)
        nbformat.write(nb, src_tmp)
        cmd = [sys.executable, '-m', 'papermill', str(src_tmp), str(out_tmp), '-k', kernel, '--cwd', str(src.parent),
               '--no-progress-bar', '--execution-timeout', str(timeout)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=_kernel_env(png))
        secs = time.perf_counter() - t0
        done = nbformat.read(out_tmp, as_version=4) if out_tmp.exists() else nb
    for c in done.cells:
        if c.metadata.get('docs_skipped'):
            c.cell_type = 'code'; c.outputs = []; c.execution_count = None
        c.metadata.pop('papermill', None)
    done.metadata.pop('papermill', None)
    if p.returncode == 0: return done, 'ok', secs, ''
    err = [l for l in (p.stderr or '').splitlines() if l.strip() and 'WARNING' not in l]
    return done, 'failed', secs, (err[-1] if err else f'papermill exit {p.returncode}')[:300]


def _title(nb, fallback: str) -> tuple:
    "(title, tagline) from the first markdown cell's `# Title` and `> tagline`."
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        t = re.search(r'^#\s+(.+)$', c.source, re.M)
        if not t: continue
        tag = re.search(r'^>\s*(.+)$', c.source, re.M)
        return t.group(1).strip(), tag.group(1).strip() if tag else ''
    return fallback, ''


def _for_page(nb):
    "Drop `#| hide` cells, strip directive lines, replace live widgets by a note."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            d = _directives(c.source)
            if 'hide' in d or 'default_exp' in d: continue
            c.source = '\n'.join(l for l in c.source.splitlines() if not re.match(r'^\s*#\|', l)).strip('\n')
            if c.metadata.get('docs_skipped'):
                c.outputs = [dict(output_type='stream', name='stdout', text='(not executed for the docs: slow or GPU cell)\n')]
            for o in c.get('outputs', []):
                if WIDGET_MIME in o.get('data', {}):
                    o['data'] = {'text/html': '<p class="widget-note"><em>Interactive widget: open this notebook in '
                                              'JupyterLab (<code>make lab</code>) to use it.</em></p>'}
            if not c.source and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    return nb


NAV_CSS = """<style>
.msl-nav{position:sticky;top:0;z-index:100;background:#1f2937;color:#e5e7eb;padding:6px 14px;font:14px sans-serif;
 display:flex;gap:14px;align-items:center;flex-wrap:wrap}
.msl-nav a{color:#93c5fd;text-decoration:none}.msl-nav .here{color:#fff;font-weight:bold}
.msl-index{max-width:1000px;margin:24px auto;font:15px sans-serif;line-height:1.5}
.msl-index table{border-collapse:collapse;width:100%}.msl-index td,.msl-index th{border-bottom:1px solid #ddd;padding:5px 8px;text-align:left}
.msl-failed{color:#b91c1c;font-weight:bold}
</style>"""


def _rel(target: str, page: str) -> str:
    return os.path.relpath(target, os.path.dirname(page) or '.').replace(os.sep, '/')


def _nav(page: str, pages: list) -> str:
    names = [p['html'] for p in pages]
    i = names.index(page) if page in names else -1
    parts = [f'<a href="{_rel("index.html", page)}"{" class=here" if page == "index.html" else ""}>medseg_lab docs</a>']
    if i > 0: parts.append(f'<a href="{_rel(names[i - 1], page)}">&larr; {html.escape(pages[i - 1]["title"])}</a>')
    if 0 <= i < len(names) - 1: parts.append(f'<a href="{_rel(names[i + 1], page)}">{html.escape(pages[i + 1]["title"])} &rarr;</a>')
    return NAV_CSS + '<nav class="msl-nav">' + ' · '.join(parts) + '</nav>'


def _fix_links(body: str) -> str:
    "Local links to notebooks point at their pages."
    return re.sub(r'href="(?!https?:|mailto:|#)([^"]+?)\.ipynb(#[^"]*)?"', lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)


def _page_name(src: Path) -> str:
    rel = src.resolve().relative_to(NBS).with_suffix('.html').as_posix()
    return 'overview.html' if rel == 'index.html' else rel


def _work(args):
    src, kernel, timeout, png, execute_it = args
    import nbformat
    src = Path(src)
    if execute_it: nb, status, secs, msg = execute(src, kernel, timeout, png)
    else: nb, status, secs, msg = nbformat.read(src, as_version=4), 'not executed', 0.0, ''
    title, tagline = _title(nb, src.stem)
    return dict(src=str(src), nb=nbformat.writes(nb), status=status, seconds=secs, message=msg, title=title, tagline=tagline)


def render(results: list, out: Path):
    "Write one HTML page per notebook and the index."
    import nbformat
    from nbconvert import HTMLExporter
    pages = [dict(r, html=_page_name(Path(r['src']))) for r in results]
    order = {'overview.html': -1}
    pages.sort(key=lambda p: (order.get(p['html'], 0), p['html'].count('/'), p['html']))
    exporter = HTMLExporter(template_name='lab')
    for p in pages:
        nb = _for_page(nbformat.reads(p['nb'], as_version=4))
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': p['title']}})
        body = _fix_links(body)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(p['html'], pages), body, count=1)
        dest = out / p['html']; dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body, encoding='utf-8')
    rows = []
    for p in pages:
        st = p['status'] if p['status'] != 'failed' else f'<span class="msl-failed">failed</span>: {html.escape(p["message"])}'
        rows.append(f'<tr><td><a href="{p["html"]}">{html.escape(p["title"])}</a></td><td>{html.escape(p["tagline"])}</td>'
                    f'<td>{st}</td><td>{p["seconds"]:.0f} s</td></tr>')
    index = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>medseg_lab docs</title>{NAV_CSS}</head><body>'
             + _nav('index.html', pages) +
             '<main class="msl-index"><h1>medseg_lab</h1><p>The notebooks of the workbench, executed '
             f'({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}) and rendered as pages. Slow and GPU cells are not run here.</p>'
             '<table><tr><th>page</th><th>what</th><th>execution</th><th>time</th></tr>' + ''.join(rows) + '</table></main></body></html>')
    (out / 'index.html').write_text(index, encoding='utf-8')
    (out / 'pages.json').write_text(json.dumps([{k: p[k] for k in ('src', 'html', 'title', 'status', 'seconds', 'message')}
                                                for p in pages], indent=1))
    return pages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to build (default: nbs/*.ipynb and nbs/demos/*.ipynb)')
    ap.add_argument('--out', default=str(REPO / '_docs'), help='output folder (default: _docs)')
    ap.add_argument('--kernel', default='medseg_lab')
    ap.add_argument('--timeout', type=int, default=600, help='seconds per cell')
    ap.add_argument('--workers', type=int, default=1, help='notebooks executed in parallel')
    ap.add_argument('--no-execute', action='store_true', help='render the notebooks as they are')
    a = ap.parse_args(argv)
    if (not os.environ.get('DISPLAY') and shutil.which('xvfb-run') and not os.environ.get('MEDSEG_DOCS_XVFB')
            and not a.no_execute):   # one virtual display for every kernel (napari cells), alive for the whole build
        os.environ['MEDSEG_DOCS_XVFB'] = '1'
        cmd = ['xvfb-run', '-a', '-s', '-screen 0 1600x1200x24', sys.executable, str(Path(__file__).resolve())]
        return subprocess.call(cmd + (sys.argv[1:] if argv is None else list(argv)))
    nbs = [Path(n).resolve() for n in a.notebooks] or default_notebooks()
    missing = [str(n) for n in nbs if not n.exists()]
    if missing: ap.error(f"notebooks not found: {missing}")
    outside = [str(n) for n in nbs if NBS not in n.parents]
    if outside: ap.error(f"notebooks must live under {NBS}: {outside}")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    png = not a.no_execute and plotly_png_ok()
    print(f"docs: {len(nbs)} notebooks -> {out}  (plotly figures as {'PNG via kaleido' if png else 'embedded plotly.js'})", flush=True)
    jobs = [(str(n), a.kernel, a.timeout, png, not a.no_execute) for n in nbs]
    results = []
    with ProcessPoolExecutor(max(1, a.workers)) as ex:
        for r in ex.map(_work, jobs):
            print(f"  {r['status']:>12}  {r['seconds']:6.1f} s  {Path(r['src']).relative_to(REPO)}"
                  + (f"  -- {r['message']}" if r['message'] else ''), flush=True)
            results.append(r)
    pages = render(results, out)
    failed = [p for p in pages if p['status'] == 'failed']
    print(f"docs: wrote {len(pages) + 1} pages to {out}/ (open {out}/index.html); {len(failed)} failed")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
