"""Sphinx extension of the medseg_lab docs: names in backticks link to their API entry; nbdev docments become
parameter descriptions on the API pages."""
from __future__ import annotations
import re
from docutils import nodes

_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$')
_NO_LINK_INSIDE = {'reference', 'title', 'literal_block', 'desc_signature', 'pending_xref', 'desc_name'}
_MEMBERS = {'attribute', 'property', 'method', 'classmethod', 'staticmethod'}
_PREFER = ('class', 'function', 'method', 'exception', 'data', 'attribute', 'property', 'module')


def _index(env) -> tuple[dict, dict]:
    "Documented Python objects by full name, and by every dotted suffix of it ('dice', 'metrics.dice')."
    objs = env.get_domain('py').objects
    full, short = {}, {}
    for name, entry in objs.items():
        if getattr(entry, 'aliased', False): continue
        full[name] = entry
        parts = name.split('.')
        for k in range(1, len(parts)): short.setdefault('.'.join(parts[k:]), []).append((name, entry))
    return full, short


def resolve(text: str, full: dict, short: dict):
    "The (name, entry) a backticked `text` names, or None when it names nothing documented or is ambiguous."
    if not _NAME.match(text): return None
    key = text[:-2] if text.endswith('()') else text
    if key in full: return key, full[key]
    cands = short.get(key, [])
    if '.' not in key:   # a bare `spacing` is a parameter more often than `SomeClass.spacing`: members need their class
        cands = [c for c in cands if c[1].objtype not in _MEMBERS]
    if len(cands) > 1:   # `train`: the function rather than the module of the same name; else ambiguous
        rank = lambda c: _PREFER.index(c[1].objtype) if c[1].objtype in _PREFER else len(_PREFER)
        best = min(map(rank, cands))
        cands = [c for c in cands if rank(c) == best]
    return cands[0] if len(cands) == 1 else None


def link_literals(app, doctree, docname):
    "Inline `code` that names a documented object becomes a link to it (not inside titles or existing links)."
    env = app.builder.env
    cache = getattr(env, '_medseg_index', None)
    if cache is None: cache = env._medseg_index = _index(env)
    full, short = cache
    for lit in list(doctree.findall(nodes.literal)):
        parent, skip = lit.parent, False
        while parent is not None:
            if parent.tagname in _NO_LINK_INSIDE: skip = True; break
            parent = parent.parent
        if skip: continue
        hit = resolve(lit.astext().strip(), full, short)
        if hit is None: continue
        name, entry = hit
        try: uri = app.builder.get_relative_uri(docname, entry.docname)
        except Exception: continue
        ref = nodes.reference('', '', internal=True, refuri=f'{uri}#{entry.node_id}', reftitle=name,
                              classes=['api-link'])
        new = lit.deepcopy(); new['classes'] = list(new.get('classes', [])) + ['api-name']
        ref += new
        lit.replace_self(ref)


def add_docments(app, what, name, obj, options, lines):
    "Parameters documented with nbdev docments (trailing comments) become `:param:` fields, unless already described."
    if what not in ('function', 'method', 'class'): return
    text = '\n'.join(lines)
    if ':param' in text or 'Args:' in text or 'Parameters' in text: return
    try:
        from fastcore.docments import docments
        target = obj.__init__ if what == 'class' else obj
        docs = docments(target, full=True, returns=True)
    except Exception:
        return
    params = [(k, v) for k, v in docs.items() if k not in ('self', 'return') and v.get('docment')]
    ret = docs.get('return', {}).get('docment') if isinstance(docs.get('return'), dict) else None
    if not params and not ret: return
    lines.append('')
    for k, v in params: lines.append(f':param {k}: {v["docment"]}')
    if ret: lines.append(f':returns: {ret}')


_CODE = re.compile(r'(``.+?``|`[^`]+`)')


def md_to_rst_line(line: str) -> str:
    """One docstring line written in nbdev's Markdown habits, made safe for reStructuredText: `code` -> ``code``,
    [text](url) -> `text <url>`_, lone `*`, `|` and trailing `_` escaped (shapes such as `(B, *spatial)`)."""
    if line.lstrip().startswith('..'): return line                       # an rst directive (napoleon writes some)
    field = re.match(r'^(\s*:[^:`]+:\s?)(.*)$', line)                        # `:param x: text`: convert the text only
    if field: return field.group(1) + md_to_rst_line(field.group(2))
    out = []
    pieces = _CODE.split(line)
    for i, part in enumerate(pieces):
        if i % 2:   # a code span; rst needs a non-word character after it (`Block`s -> ``Block``\ s)
            out.append(part if part.startswith('``') else '``' + part[1:-1] + '``')
            if i + 1 < len(pieces) and re.match(r'\w', pieces[i + 1]): out.append('\\ ')
            continue
        part = re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)', lambda m: f'`{m.group(1)} <{m.group(2)}>`_', part)
        part = re.sub(r'(?<![*\\])\*(?!\*)', r'\\*', part)
        part = part.replace('|', '\\|')
        part = re.sub(r'(\w)_(?=\W|$)', r'\1\\_', part)
        out.append(part)
    return ''.join(out)


def process_docstring(app, what, name, obj, options, lines):
    "Docments as parameter fields, then the Markdown habits of the docstrings made valid reStructuredText."
    add_docments(app, what, name, obj, options, lines)
    lines[:] = [md_to_rst_line(l) for l in lines]


def setup(app):
    app.connect('doctree-resolved', link_literals)
    app.connect('autodoc-process-docstring', process_docstring, priority=600)   # after napoleon's Google sections
    return {'parallel_read_safe': True, 'parallel_write_safe': True, 'version': '1'}
