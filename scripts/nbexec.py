#!/usr/bin/env python
"""Execute the notebooks in their CI setting and write them back with their outputs (`make execute`).

    python scripts/nbexec.py [NOTEBOOK ...] [--jobs 2] [--timeout 1800]   # execute (default: every notebook)
    python scripts/nbexec.py --check [NOTEBOOK ...]                      # list notebooks whose outputs are stale
    python scripts/nbexec.py --flags slow --out runs/reproduce NOTEBOOK  # the slow setting too, a copy in runs/
    python scripts/nbexec.py --out runs/reproduce -p budget_s=600 NB     # an experiment's real setting (parameters)

What a reader sees on the repository page is what ran here:
- the setting is CI's: cells flagged `#| slow` or `#| gpu` (without CUDA) and `#| eval: false` cells are left
  unexecuted, as `nbdev_test` leaves them; `#| gui` cells (napari) run under a virtual display (`xvfb-run`);
  experiment notebooks run with the defaults of their papermill `parameters` cell;
- figures are static images beside the interactive output: matplotlib inline PNGs, plotly as its JSON bundle
  (interactive in JupyterLab) plus a PNG from kaleido (GitHub shows it); a live ipywidgets output, which needs a
  running kernel, is replaced by a static render of its default state (the figures and text its Output widgets and
  plotly FigureWidgets held, and one line naming its controls); progress-bar widgets become one line of text;
- no JavaScript is embedded (widget state, `application/javascript` and `<script>` HTML are dropped) and large
  images are downscaled, so that `nbs/` stays small;
- each executed notebook records in its metadata, under `medseg_lab`, the SHA-256 of its code cells
  (`source_hash`), the package version, the setting, the date and the seconds it took: `--check` (and
  tests/test_notebooks.py) compare that hash with the notebook's current code to find outputs that are stale.
  Markdown edits do not make outputs stale; any change to a code cell does.
The notebook is written back only when it executed without error, then cleaned by `nbdev_clean` (which keeps
outputs and the `medseg_lab` metadata: settings.ini has `clear_all = False`, `allowed_metadata_keys = medseg_lab`).
"""
from __future__ import annotations
import argparse, base64, datetime as _dt, hashlib, io, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / 'nbs'
META_KEY = 'medseg_lab'
WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json'
WIDGET_STATE = 'application/vnd.jupyter.widget-state+json'
PLOTLY_JSON = 'application/vnd.plotly.v1+json'
MAX_SIDE = 1400            # images wider or taller than this (pixels) are downscaled
MAX_PNG_BYTES = 350_000    # PNGs larger than this after downscaling are re-encoded with a 256-colour palette


# ---------------------------------------------------------------------------------------------------------------
# which notebooks, and whether their outputs are fresh
def all_notebooks() -> list[Path]:
    "Every notebook of the project: nbs/*.ipynb, nbs/demos/*.ipynb, nbs/experiments/*.ipynb (folders `_*`/`.*` not)."
    out = []
    for p in sorted(NBS.rglob('*.ipynb')):
        rel = p.relative_to(NBS).parts
        if any(part.startswith(('_', '.')) for part in rel) or 'results' in rel[:-1]: continue
        out.append(p)
    return out


def _cell_source(cell) -> str:
    src = cell.get('source', '')
    return ''.join(src) if isinstance(src, list) else src


def source_hash(nb: dict) -> str:
    "SHA-256 of the notebook's code cells (their sources in order, trailing whitespace ignored)."
    h = hashlib.sha256()
    for c in nb.get('cells', []):
        if c.get('cell_type') != 'code': continue
        text = '\n'.join(l.rstrip() for l in _cell_source(c).strip('\n').splitlines())
        h.update(text.encode('utf-8')); h.update(b'\0')
    return h.hexdigest()


def freshness(path: Path) -> tuple[str, str]:
    "('fresh' | 'stale' | 'never executed', explanation) for the notebook at `path`."
    nb = json.loads(Path(path).read_text(encoding='utf-8'))
    meta = nb.get('metadata', {}).get(META_KEY)
    if not meta or 'source_hash' not in meta: return 'never executed', 'no medseg_lab.source_hash in its metadata'
    now = source_hash(nb)
    if meta['source_hash'] != now:
        return 'stale', (f"code changed since it was executed ({meta.get('executed_utc', '?')}, "
                         f"hash {meta['source_hash'][:12]} != {now[:12]})")
    return 'fresh', f"executed {meta.get('executed_utc', '?')}"


def required_notebooks() -> list[str]:
    """Notebooks that must be committed executed: settings.ini `executed_notebooks` (globs relative to nbs/,
    separated by spaces; `*` alone means every notebook; empty: none required, only executed ones are checked)."""
    import configparser
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(REPO / 'settings.ini', encoding='utf-8')
    return cfg['DEFAULT'].get('executed_notebooks', '').split()


def is_required(path: Path, globs=None) -> bool:
    from fnmatch import fnmatch
    globs = required_notebooks() if globs is None else globs
    rel = Path(path).resolve().relative_to(NBS).as_posix()
    return any(g == '*' or fnmatch(rel, g) for g in globs)


# ---------------------------------------------------------------------------------------------------------------
# execution
def _directives(source: str) -> dict:
    "nbdev cell directives (`#| name value`) at the top of a cell."
    out = {}
    for line in source.splitlines():
        m = re.match(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', line)
        if m: out[m.group(1)] = m.group(2).strip()
        elif line.strip(): break
    return out


def _skip_reason(cell, skip_flags) -> str | None:
    d = _directives(_cell_source(cell))
    if d.get('eval', '').lower() == 'false': return 'eval: false'
    for f in skip_flags:
        if f in d: return f
    return None


def _cuda() -> bool:
    try:
        import torch; return torch.cuda.is_available()
    except Exception: return False


def kernel_env() -> dict:
    "Environment of the kernels: inline matplotlib, plotly JSON + PNG (kaleido, Debian's Chromium), one thread."
    env = dict(os.environ)
    env['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'   # the Makefile exports Agg, which hides figures
    env['PLOTLY_RENDERER'] = 'plotly_mimetype+png'
    env.setdefault('OMP_NUM_THREADS', '1'); env.setdefault('MKL_NUM_THREADS', '1')
    for b in ('/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'):
        if Path(b).exists(): env.setdefault('BROWSER_PATH', b); break
    env.pop('MEDSEG_LAB_VIEWER', None)
    return env


def inject_parameters(nb, params: dict):
    "Add a cell setting `params` after the papermill `parameters` cell (papermill's habit); ValueError if none."
    import nbformat
    i = next((i for i, c in enumerate(nb.cells) if 'parameters' in c.get('metadata', {}).get('tags', [])), None)
    if i is None: raise ValueError("the notebook has no cell tagged `parameters` to override")
    cell = nbformat.v4.new_code_cell('# injected parameters\n' + '\n'.join(f'{k} = {v!r}' for k, v in params.items()))
    cell.metadata['tags'] = ['injected-parameters']
    nb.cells.insert(i + 1, cell)


def _client_class():
    "nbclient's NotebookClient, poking the kernel while a cell runs (a Qt event loop can miss a request otherwise)."
    import asyncio
    from nbclient import NotebookClient

    class Client(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            poke = asyncio.ensure_future(self._poke())
            try: return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            finally: poke.cancel()

        async def _poke(self, every: float = 10.0):
            # After `%gui qt` (napari) the kernel waits in Qt's event loop for its shell socket's edge-triggered
            # notifier; a request that arrives while the loop is being set up can be left unread, and the run would
            # wait forever. A kernel_info request now and then is new activity on that socket; its replies are
            # ignored by nbclient (they answer no cell).
            while True:
                await asyncio.sleep(every)
                try: self.kc.kernel_info()
                except Exception: return
    return Client


def execute(path: Path, kernel: str = 'medseg_lab', timeout: int = 900, run_flags: tuple = (),
            out_dir: str | None = None, params: dict | None = None) -> dict:
    """Execute the notebook at `path` in CI's setting (or with the cells of `run_flags` too, e.g. ('slow',)) and write
    it back with static outputs and its source hash (or, with `out_dir`, a copy there: a record of a slow run)."""
    import nbformat
    t0 = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    if params:
        if not out_dir: raise ValueError("parameters change the notebook's code: use them with an output folder (--out)")
        inject_parameters(nb, params)
    skip_flags = [f for f in ['slow'] + ([] if _cuda() else ['gpu']) if f not in run_flags]
    skipped = {}
    for c in nb.cells:   # nbclient runs every code cell: park the skipped ones as raw cells, restored below
        if c.cell_type == 'code':
            why = _skip_reason(c, skip_flags)
            if why:
                skipped[c.get('id')] = why; c.cell_type = 'raw'; c.metadata['_nbexec_skip'] = True
                c.pop('outputs', None); c.pop('execution_count', None)
    os.environ.update(kernel_env())
    hooks = {}
    if os.environ.get('NBEXEC_VERBOSE'):   # one line per cell on stderr: where a long or stuck run is
        def _start(cell, cell_index):
            first = (cell.source.splitlines() or [''])[0][:70]
            print(f"    {path.name} [{cell_index}] {time.perf_counter() - t0:7.1f} s  {first}", file=sys.stderr, flush=True)
        hooks['on_cell_start'] = _start
    def _snapshot(cell, cell_index, execute_reply):   # widgets as the cell left them: their default state
        ids = [o['data'][WIDGET_VIEW].get('model_id') for o in cell.get('outputs', []) if WIDGET_VIEW in o.get('data', {})]
        if ids: cell.metadata['_nbexec_widgets'] = _reachable(ids, client.widget_state)
    hooks['on_cell_executed'] = _snapshot
    client = _client_class()(nb, kernel_name=kernel, timeout=timeout if timeout > 0 else None, store_widget_state=True,
                            resources={'metadata': {'path': str(path.parent)}}, **hooks)
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    try:
        client.execute()
        error, transient = None, False
    except Exception as e:   # CellExecutionError carries the traceback text
        error = f"{type(e).__name__}: {str(e)[-3000:]}"
        # a hung or killed kernel, or kaleido's headless Chromium failing under load: worth one more try
        transient = isinstance(e, (CellTimeoutError, DeadKernelError)) or 'kaleido' in str(e)
    for c in nb.cells:
        if c.metadata.pop('_nbexec_skip', False):
            c.cell_type = 'code'; c.outputs = []; c.execution_count = None
    secs = time.perf_counter() - t0
    if error: return dict(path=str(path), status='failed', seconds=secs, message=error, transient=transient)
    state = nb.metadata.pop('widgets', {}).get(WIDGET_STATE, {}).get('state', {})
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = static_outputs(c.outputs, c.metadata.pop('_nbexec_widgets', None) or state)
    for i, c in enumerate(nb.cells):   # a widget callback that raised leaves its traceback in the widget, not the cell
        if 'raises-exception' in c.get('metadata', {}).get('tags', []): continue
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error':
                tb = '\n'.join(o.get('traceback', []))
                return dict(path=str(path), status='failed', seconds=secs, transient='kaleido' in tb,
                            message=f"cell {i}: an output holds a traceback ({o.get('ename')}: {o.get('evalue', '')[:200]})")
    import medseg_lab
    setting = ('ci' if not run_flags else 'with ' + ', '.join(f'#| {f}' for f in run_flags) + ' cells') + (
        ': ' + ', '.join(f'#| {f}' for f in skip_flags) + ' cells not executed' if skip_flags else '')
    nb.metadata[META_KEY] = dict(source_hash=source_hash(nb), version=getattr(medseg_lab, '__version__', 'unknown'),
                                 setting=setting,
                                 skipped_cells=len(skipped),
                                 executed_utc=_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                                 seconds=round(secs, 1))
    for c in nb.cells: c.metadata.pop('execution', None)
    if out_dir:   # a record of this run beside the others; the committed notebook stays as it is
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        dest = Path(out_dir) / f'{path.stem}-{stamp}.ipynb'; dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
        return dict(path=str(path), status='ok', seconds=secs, message=f'executed copy: {dest}')
    nbformat.write(nb, path)
    subprocess.run([str(Path(sys.executable).parent / 'nbdev_clean'), '--fname', str(path)], cwd=REPO, check=True)
    return dict(path=str(path), status='ok', seconds=secs, message=f'{len(skipped)} cells not executed')


# ---------------------------------------------------------------------------------------------------------------
# outputs: static, small, without JavaScript
def static_outputs(outputs: list, state: dict) -> list:
    "Outputs with live widgets replaced by static renders, JavaScript removed and images downscaled."
    import nbformat
    out = []
    for o in outputs:
        data = o.get('data', {})
        if WIDGET_VIEW in data:
            out.extend(static_outputs(widget_render(data[WIDGET_VIEW].get('model_id'), state), state)); continue
        if 'data' in o:
            data.pop('application/javascript', None)
            data.pop('application/vnd.jupyter.widget-state+json', None)
            html = data.get('text/html')
            if html is not None and '<script' in (''.join(html) if isinstance(html, list) else html):
                data.pop('text/html')
            for k in ('image/png', 'image/jpeg'):
                if k in data: data[k], o['metadata'] = _shrink(data[k], k, o.get('metadata', {}))
            if not data: continue
        out.append(o if isinstance(o, nbformat.NotebookNode) else nbformat.from_dict(o))
    return out


def _shrink(b64, mime: str, meta: dict):
    "Downscale an image to MAX_SIDE and re-encode a large PNG with a palette; returns (base64, metadata)."
    from PIL import Image
    raw = base64.b64decode(''.join(b64) if isinstance(b64, list) else b64)
    try: im = Image.open(io.BytesIO(raw)); im.load()
    except Exception: return (b64 if isinstance(b64, str) else ''.join(b64)), meta    # not an image PIL reads: as is
    w, h = im.size
    if max(w, h) <= MAX_SIDE and len(raw) <= MAX_PNG_BYTES: return (b64 if isinstance(b64, str) else ''.join(b64)), meta
    if max(w, h) > MAX_SIDE:
        f = MAX_SIDE / max(w, h); im = im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)
    buf = io.BytesIO()
    if mime == 'image/jpeg': im.convert('RGB').save(buf, 'JPEG', quality=85, optimize=True)
    else:
        im.save(buf, 'PNG', optimize=True)
        if buf.tell() > MAX_PNG_BYTES:
            buf = io.BytesIO(); im.convert('RGB').quantize(256).save(buf, 'PNG', optimize=True)
    meta = {k: v for k, v in dict(meta).items() if k != mime}   # the old width/height hints no longer hold
    return base64.b64encode(buf.getvalue()).decode('ascii'), meta


def _reachable(ids: list, widget_state: dict) -> dict:
    "Copies of the states of the widgets `ids` and of every widget they refer to (children, Output widgets)."
    import copy
    out, todo = {}, list(ids)
    while todo:
        mid = todo.pop()
        if not mid or mid in out or mid not in widget_state: continue
        st = widget_state[mid]
        slim = {k: v for k, v in st.items() if k not in ('_esm', '_css')}     # anywidget's JavaScript: not needed
        out[mid] = dict(model_name=st.get('_model_name'), state=copy.deepcopy(slim))
        for v in st.values():
            for x in (v if isinstance(v, list) else [v]):
                if _ref(x): todo.append(_ref(x))
    return out


def _ref(v):
    return v[len('IPY_MODEL_'):] if isinstance(v, str) and v.startswith('IPY_MODEL_') else None


def widget_render(model_id: str, state: dict) -> list:
    """Static outputs for the widget `model_id` from the widget state nbclient recorded: what its Output widgets
    showed, its plotly FigureWidgets as PNGs, one line naming its controls and their values; a progress bar becomes
    its final line of text."""
    controls, outputs, texts, bars = [], [], [], []
    seen = set()
    def walk(mid):
        if not mid or mid in seen or mid not in state: return
        seen.add(mid)
        m = state[mid]; name, s = m.get('model_name', ''), m.get('state', {})
        if name == 'OutputModel':
            outputs.extend(s.get('outputs', []))
        elif '_widget_data' in s:                                    # plotly FigureWidget (an anywidget)
            outputs.extend(_plotly_png(s))
        elif name in ('FloatProgressModel', 'IntProgressModel'):
            bars.append(s)
        elif name in ('HTMLModel', 'LabelModel', 'HTMLMathModel'):
            t = re.sub(r'<[^>]+>', '', str(s.get('value', ''))).replace('&nbsp;', ' ').strip()
            if t: texts.append(t)
        elif 'value' in s or 'index' in s:
            label = s.get('description') or name.replace('Model', '')
            value = s.get('value')
            if value is None and s.get('_options_labels') and isinstance(s.get('index'), int):
                value = s['_options_labels'][s['index']]
            controls.append(f'{label} = {value}')
        for v in s.get('children', []) if isinstance(s.get('children'), list) else []: walk(_ref(v))
    walk(model_id)
    if bars and not outputs:
        b = bars[0]; total = b.get('max') or 0
        line = ' '.join(texts) or f"{b.get('value', 0)}/{total}"
        return [dict(output_type='stream', name='stderr', text=line + '\n')]
    note = ('Interactive widget, shown here as a static image of its state after its cell ran'
            + (f" ({', '.join(controls)})" if controls else '') + ': run the notebook to use its controls.')
    return [dict(output_type='display_data', metadata={},
                 data={'text/plain': note, 'text/markdown': f'*{note}*'})] + [dict(o) for o in outputs]


def _plotly_png(s: dict) -> list:
    "A plotly FigureWidget's state as a static PNG output (kaleido), or nothing when kaleido cannot render."
    try:
        import plotly.graph_objects as go
        fig = go.Figure(data=s.get('_widget_data') or [], layout=s.get('_widget_layout') or {})
        png = fig.to_image(format='png')
    except Exception as e:
        return [dict(output_type='stream', name='stderr', text=f'(static render of the plotly figure failed: {e})\n')]
    return [dict(output_type='display_data', metadata={},
                 data={'image/png': base64.b64encode(png).decode('ascii'), 'text/plain': '<plotly figure>'})]


# ---------------------------------------------------------------------------------------------------------------
def _resolve(names) -> list[Path]:
    if not names: return all_notebooks()
    out = []
    for n in names:
        p = Path(n)
        if not p.is_absolute(): p = (Path.cwd() / p) if (Path.cwd() / p).exists() else (REPO / p)
        p = p.resolve()
        if p.is_dir(): out.extend(q for q in all_notebooks() if p in q.parents); continue
        if not p.exists(): raise SystemExit(f"nbexec: no notebook {n}")
        if NBS not in p.parents: raise SystemExit(f"nbexec: {n} is not under {NBS}")
        out.append(p)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks or folders (default: every notebook under nbs/)')
    ap.add_argument('--jobs', type=int, default=int(os.environ.get('NBEXEC_JOBS', 2)), help='notebooks at a time')
    ap.add_argument('--timeout', type=int, default=900, help='seconds per cell (0: no limit)')
    ap.add_argument('--retries', type=int, default=1, help='reruns of a notebook whose kernel died or hung')
    ap.add_argument('--kernel', default='medseg_lab')
    ap.add_argument('--check', action='store_true', help='only report fresh / stale / never executed')
    ap.add_argument('--flags', default='', help='flags of cells to execute too, e.g. "slow" (make reproduce)')
    ap.add_argument('--out', default=None, help='write the executed notebooks into this folder, not in place')
    ap.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                    help='override a parameters-cell value (a Python literal, else a string); needs --out')
    ap.add_argument('-v', '--verbose', action='store_true', help='print each cell as it starts')
    ap.add_argument('--stale', action='store_true', help='execute only notebooks that are stale or never executed')
    a = ap.parse_args(argv)
    nbs = _resolve(a.notebooks)
    params = {}
    for kv in a.param:
        k, sep, v = kv.partition('=')
        if not sep or not k.isidentifier(): ap.error(f"--param wants NAME=VALUE, got {kv!r}")
        import ast
        try: params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError): params[k] = v
    if params and not a.out: ap.error("--param needs --out: the committed notebooks run with their own defaults")
    if a.check:
        bad = 0
        for p in nbs:
            st, why = freshness(p)
            req = is_required(p)
            bad += st == 'stale' or (st == 'never executed' and req)
            print(f"{st:>15}  {p.relative_to(REPO)}  ({why}{'; required' if req else ''})")
        return 1 if bad else 0
    if a.verbose: os.environ['NBEXEC_VERBOSE'] = '1'
    if a.stale: nbs = [p for p in nbs if freshness(p)[0] != 'fresh']
    if not os.environ.get('DISPLAY') and shutil.which('xvfb-run') and not os.environ.get('NBEXEC_XVFB'):
        os.environ['NBEXEC_XVFB'] = '1'    # one virtual display for every kernel (napari cells), for the whole run
        cmd = ['xvfb-run', '-a', '-s', '-screen 0 1600x1200x24', sys.executable, str(Path(__file__).resolve())]
        return subprocess.call(cmd + (sys.argv[1:] if argv is None else list(argv)))
    print(f"nbexec: {len(nbs)} notebooks, {a.jobs} at a time", flush=True)
    t0, failed = time.perf_counter(), []
    with ProcessPoolExecutor(max(1, a.jobs)) as ex:
        n = len(nbs)
        for r in ex.map(execute, nbs, [a.kernel] * n, [a.timeout] * n, [tuple(a.flags.split())] * n, [a.out] * n,
                        [params] * n):
            print(f"  {r['status']:>6}  {r['seconds']:6.1f} s  {Path(r['path']).relative_to(REPO)}  {r['message'][:300]}",
                  flush=True)
            if r['status'] != 'ok' and r.get('transient') and a.retries > 0:   # a stuck Qt event loop, say: once more
                print(f"  retrying {Path(r['path']).relative_to(REPO)} on its own", flush=True)
                r = execute(Path(r['path']), a.kernel, a.timeout, tuple(a.flags.split()), a.out, params)
                print(f"  {r['status']:>6}  {r['seconds']:6.1f} s  {Path(r['path']).relative_to(REPO)}  {r['message'][:300]}",
                      flush=True)
            if r['status'] != 'ok':
                failed.append(r); print(r['message'], file=sys.stderr)
    print(f"nbexec: {len(nbs) - len(failed)} executed, {len(failed)} failed in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
