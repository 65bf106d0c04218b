"""Peak memory of one training step and one inference, for every model at the papers' input sizes.

The papers report GPU memory of training: CNM-UNet (Xu et al., AAAI 2026) Table 1 (Polyp, 3x352x352, batch 8, RTX 4090:
vanilla UNet, CNM-UNet, the explicit-Euler "DiODE-UNet" and the all-ODE "Continuous UNet"), FuseUNet (He et al., ICML
2025, arXiv:2506.05821) Table 9 (nnU-Net, UNETR and UltraLight VM-UNet backbones against FuseUNet on each) and Table 5
(FuseUNet's memory width Y = N ... 4N on KiTS). This script measures the same quantities for our models:

* on CPU, per case a fresh Python process imports torch and medseg_lab, builds the model and its optimiser, and runs
  one training step (forward, the model's loss, backward, the paper's optimiser step) or one inference (eval, no
  gradients, batch 1). Reported: the peak resident set size of the process (`peak_rss_gib`, `ru_maxrss`: what the OS
  shows, libraries included), the peak of its resident *anonymous* memory (`peak_anon_gib`: heap, tensors, Python;
  sampled every millisecond from /proc/self/statm, since the mapped libraries' pages come and go with the machine's
  memory pressure) and that peak above the process right after the imports (`above_import_gib`: weights, gradients,
  optimiser state, activations, convolution workspace; the closest to what a GPU figure counts);
* on CUDA (`--device cuda`), `torch.cuda.max_memory_allocated` of the step, as PyTorch counts GPU memory.

GPU figures (the papers', under mixed precision, cuDNN kernels) and CPU figures (float32; PyTorch's CPU 3D convolution
keeps an im2col/vol2col buffer of one image per layer call) differ in scale: compare ratios and orders, not GiB.

The papers' settings do not all fit a shared CPU machine (a 3D nnU-Net step at 2x128^3 needs several GiB, the
continuous UNet much more). `--max-gib` caps what is run: every case is first measured at **batch 1 and 2 at half the
spatial size per axis**, which fixes a model `peak = const + voxels x (workspace + batch x activations)` (the weights
and optimiser state are constant, the convolution workspace grows with the voxels only, the activations with voxels
and batch); the paper's setting is then run directly only if that model predicts it under the cap, otherwise the
predicted value is reported as `extrapolated`. Cases run directly also check the model (`predicted_gib` beside the
measurement).

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory.py [--cases KEY ...] [--max-gib 6] [--device cpu|cuda] [--list]
Writes nbs/results/memory.json (via medseg_lab.results.save_results: command, date, machine, commit) and
benchmarks/memory_results.txt (the table). The README's claim about the MM-UNet paper preset on a 64^3 patch is
`README_CLAIMS` below, checked at its bound by tests/test_memory.py.
"""
from __future__ import annotations
import argparse, json, math, subprocess, sys, time
from dataclasses import dataclass, field, asdict
from pathlib import Path

GIB = 2 ** 30


@dataclass
class Case:
    key: str                      # short name
    model: str                    # registry name
    preset: str                   # registry preset
    shape: tuple                  # (C, *spatial) of one input
    batch: int                    # the paper's training batch
    optimizer: str = 'adamw'      # 'adamw' | 'sgd' (the paper's)
    overrides: dict = field(default_factory=dict)
    size_kw: str | None = None    # constructor argument that must equal the spatial side (img_size of CNM-UNet, UNETR)
    paper_gib: float | None = None  # the paper's training memory (GB as printed)
    paper_source: str = ''
    mode: str = 'train'           # 'train' or 'infer'


CASES = [
    # CNM-UNet Table 1: Polyp, 3x352x352, batch 8, AdamW
    Case('unet-paper-352', 'unet', 'paper', (3, 352, 352), 8, paper_gib=6.19, paper_source='CNM-UNet Table 1 (vanilla UNet)'),
    Case('cnmunet-paper-352', 'cnmunet', 'paper-352', (3, 352, 352), 8, size_kw='img_size', paper_gib=5.66,
         paper_source='CNM-UNet Table 1'),
    Case('cnmunet-eed-352', 'cnmunet', 'eed', (3, 352, 352), 8, paper_gib=4.34, paper_source='CNM-UNet Table 1 (DiODE-UNet, EED)'),
    Case('continuous-unet-352', 'cnmunet', 'continuous-unet', (3, 352, 352), 8, paper_gib=14.24,
         paper_source='CNM-UNet Table 1 (Continuous UNet)'),
    # FuseUNet Table 9 (nnU-Net on KiTS: 4 classes, nnU-Net's 128^3 patch, batch 2, SGD) and Table 5 (memory width)
    Case('nnunet-3d', 'fuseunet', 'paper-nnunet-3d', (1, 128, 128, 128), 2, 'sgd', dict(fuse=False), paper_gib=7.33,
         paper_source='FuseUNet Table 9 (nnU-Net)'),
    Case('fuseunet-nnunet-3d', 'fuseunet', 'paper-nnunet-3d', (1, 128, 128, 128), 2, 'sgd', paper_gib=5.91,
         paper_source='FuseUNet Table 9 (Table 5, 2N: 5.9)'),
    Case('fuseunet-nnunet-3d-N', 'fuseunet', 'paper-nnunet-3d', (1, 128, 128, 128), 2, 'sgd', dict(memory_channels=4),
         paper_gib=5.2, paper_source='FuseUNet Table 5 (Y = N)'),
    Case('fuseunet-nnunet-3d-3N', 'fuseunet', 'paper-nnunet-3d', (1, 128, 128, 128), 2, 'sgd', dict(memory_channels=12),
         paper_gib=7.1, paper_source='FuseUNet Table 5 (Y = 3N)'),
    Case('fuseunet-nnunet-3d-4N', 'fuseunet', 'paper-nnunet-3d', (1, 128, 128, 128), 2, 'sgd', dict(memory_channels=16),
         paper_gib=8.7, paper_source='FuseUNet Table 5 (Y = 4N)'),
    # FuseUNet Table 9, UNETR on MSD brain (4x128^3, batch 1) and UltraLight VM-UNet on ISIC (3x256^2, batch 8)
    Case('unetr-3d', 'fuseunet', 'paper-unetr-3d', (4, 128, 128, 128), 1, overrides=dict(fuse=False), size_kw='img_size',
         paper_gib=9.4, paper_source='FuseUNet Table 9 (UNETR)'),
    Case('fuseunet-unetr-3d', 'fuseunet', 'paper-unetr-3d', (4, 128, 128, 128), 1, size_kw='img_size', paper_gib=7.8,
         paper_source='FuseUNet Table 9'),
    Case('ultralight-2d', 'fuseunet', 'paper-ultralight-2d', (3, 256, 256), 8, overrides=dict(fuse=False), paper_gib=0.87,
         paper_source='FuseUNet Table 9 (UltraLight VM-UNet)'),
    Case('fuseunet-ultralight-2d', 'fuseunet', 'paper-ultralight-2d', (3, 256, 256), 8, paper_gib=1.27,
         paper_source='FuseUNet Table 9'),
    # the other models at their papers' training settings (no memory figure published)
    Case('vmunet-paper', 'vmunet', 'paper', (3, 256, 256), 32),
    Case('dsvmunet-paper', 'dsvmunet', 'paper', (3, 256, 256), 32),
    Case('lgmsnet-paper-2d', 'lgmsnet', 'paper-2d', (3, 256, 256), 16, 'sgd'),
    Case('lgmsnet-paper-3d', 'lgmsnet', 'paper-3d', (1, 96, 96, 96), 1),
    Case('mmunet-paper-3d', 'mmunet', 'paper', (1, 128, 128, 128), 2, 'sgd'),
    # the README's claim: the MM-UNet paper preset on one 64^3 patch (inference, and a training step for reference)
    Case('mmunet-paper-64-infer', 'mmunet', 'paper', (1, 64, 64, 64), 1, mode='infer'),
    Case('mmunet-paper-64-train', 'mmunet', 'paper', (1, 64, 64, 64), 1, 'sgd'),
]
CASE = {c.key: c for c in CASES}

# what the README states, checked at exactly this bound by tests/test_memory.py (peak anonymous memory of the process)
README_CLAIMS = {'mmunet-paper-64-infer': 1.5}   # GiB of peak anonymous memory of the whole process (1.32 measured;
# its peak RSS, 1.42-1.51 GiB, also counts the mapped libraries' resident pages, which vary with the machine's load)

# ---------------------------------------------------------------------------------------------------------------------
# the probe: runs in a fresh interpreter, prints one JSON line

_PROBE = r'''
import json, os, resource, sys, threading, time
PAGE = os.sysconf('SC_PAGE_SIZE')
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024          # peak RSS so far, bytes (Linux: KiB)
def anon():
    "Resident anonymous memory now (statm: resident - shared pages): heap, tensors, Python; not the mapped libraries."
    with open('/proc/self/statm') as f: v = f.read().split()
    return (int(v[1]) - int(v[2])) * PAGE
class Sampler(threading.Thread):
    "Samples `anon()` every millisecond while torch runs (its kernels release the GIL): the peak of tensor memory."
    def __init__(self): super().__init__(daemon=True); self.peak, self.stop = anon(), False
    def run(self):
        while not self.stop: self.peak = max(self.peak, anon()); time.sleep(0.001)
spec = json.loads(sys.argv[1])
import torch
torch.set_num_threads(spec['threads'])
from medseg_lab.models import build_model
import medseg_lab.losses as L
after_import, anon_import = rss(), anon()
dev = torch.device(spec['device'])
torch.manual_seed(0)
kw = dict(spec['overrides'])
if spec['size_kw']: kw[spec['size_kw']] = spec['shape'][1]
model = build_model(spec['model'], preset=spec['preset'], **kw).to(dev)
x = torch.randn(spec['batch'], *spec['shape'], device=dev)
if spec['device'] == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
after_build, anon_build = rss(), anon()
sampler = Sampler(); sampler.start()
t0 = time.perf_counter()
if spec['mode'] == 'infer':
    model.eval()
    with torch.no_grad(): model(x)
else:
    model.train()
    C = model.out_channels
    y = torch.randint(0, max(C, 2), (spec['batch'], *spec['shape'][1:]), device=dev)
    loss_fn = L.BceDiceLoss() if C == 1 else L.CeDiceLoss()
    opt = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99, nesterov=True) if spec['optimizer'] == 'sgd'
           else torch.optim.AdamW(model.parameters(), lr=1e-3))
    out = model(x, return_aux=True) if spec['model'] == 'dsvmunet' else model(x)
    loss = loss_fn(out.logits if hasattr(out, 'logits') else out, y)
    for v in getattr(out, 'distill', {}).values(): loss = loss + v
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
if spec['device'] == 'cuda': torch.cuda.synchronize()
seconds = time.perf_counter() - t0
sampler.stop = True; sampler.join(); peak_anon = max(sampler.peak, anon())
res = dict(after_import=after_import, after_build=after_build, peak=rss(), anon_import=anon_import, anon_build=anon_build,
           peak_anon=peak_anon,
           seconds=seconds, params=sum(p.numel() for p in model.parameters()))
if spec['device'] == 'cuda':
    res.update(cuda_max_allocated=torch.cuda.max_memory_allocated(), cuda_max_reserved=torch.cuda.max_memory_reserved())
print('RESULT ' + json.dumps(res))
'''


def probe(case: Case, batch: int | None = None, scale: int = 1, device: str = 'cpu', threads: int = 1,
          timeout: float = 3600) -> dict:
    "Measure `case` once in a fresh interpreter, at `batch` (default the case's) and the spatial size divided by `scale`."
    shape = (case.shape[0], *(s // scale for s in case.shape[1:]))
    spec = dict(model=case.model, preset=case.preset, overrides=case.overrides, size_kw=case.size_kw, shape=shape,
                batch=case.batch if batch is None else batch, optimizer=case.optimizer, mode=case.mode,
                device=device, threads=threads)
    p = subprocess.run([sys.executable, '-c', _PROBE, json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    line = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
    if p.returncode or not line:
        raise RuntimeError(f"memory probe for {case.key} (batch {spec['batch']}, {shape}) failed with exit code "
                           f"{p.returncode}:\n{p.stderr[-3000:]}")
    r = json.loads(line[0][len('RESULT '):])
    r.update(batch=spec['batch'], shape=list(shape))
    return r


def _gib(b): return None if b is None else round(b / GIB, 3)


def measure(case: Case, max_gib: float = 6., device: str = 'cpu', threads: int = 1) -> dict:
    "The case's row: the two small probes, the fitted model, and the paper setting (measured or extrapolated)."
    cuda = device == 'cuda'
    key = 'cuda_max_allocated' if cuda else 'peak_anon'
    row = dict(key=case.key, model=case.model, preset=case.preset, mode=case.mode, input=[case.batch, *case.shape],
               paper_gib=case.paper_gib, paper_source=case.paper_source, device=device)
    def record(r):
        row.update(how='measured', peak_rss_gib=_gib(r['peak']), peak_anon_gib=_gib(r['peak_anon']),
                   above_import_gib=_gib(r['peak_anon'] - r['anon_import']), cuda_gib=_gib(r.get('cuda_max_allocated')),
                   params=r['params'], seconds=round(r['seconds'], 1))
    vox = math.prod(case.shape[1:])
    if case.mode == 'infer' or case.batch == 1 and vox <= 64 ** 3:      # small enough: measure directly
        record(probe(case, device=device, threads=threads)); return row
    a, b = probe(case, 1, 2, device, threads), probe(case, 2, 2, device, threads)
    # peak = const + s * (workspace + batch * activations): the activations grow with batch and voxels, the convolution
    # workspace (CPU im2col / vol2col, one image at a time) with voxels only, the weights and optimiser state with neither
    const = (0 if cuda else a['anon_build']) + (3 if case.optimizer == 'adamw' else 2) * 4 * a['params']
    act = b[key] - a[key]
    work = max(a[key] - act - const, 0)
    s = vox / math.prod(s // 2 for s in case.shape[1:])
    predicted = const + s * (work + case.batch * act)
    row.update(const_gib=_gib(const), workspace_half_gib=_gib(work), per_sample_half_gib=_gib(act), predicted_gib=_gib(predicted),
               params=a['params'])
    if predicted <= max_gib * GIB: record(probe(case, device=device, threads=threads))
    else:
        row.update(how='extrapolated', peak_anon_gib=None if cuda else _gib(predicted),
                   above_import_gib=None if cuda else _gib(predicted - a['anon_import']), cuda_gib=_gib(predicted) if cuda else None)
    return row


def table(rows: list) -> str:
    "The rows as a fixed-width text table (GiB; the papers print GB of GPU memory)."
    head = f"{'case':24} {'mode':5} {'input':22} {'how':12} {'rss':>7} {'anon':>7} {'above':>7} {'cuda':>6} {'pred.':>7} {'paper':>6}  source"
    out = [head, '-' * len(head)]
    f = lambda v: '' if v is None else f"{v:.2f}"
    for r in rows:
        out.append(f"{r['key']:24} {r['mode']:5} {'x'.join(map(str, r['input'])):22} {r['how']:12} {f(r.get('peak_rss_gib')):>7} "
                   f"{f(r.get('peak_anon_gib')):>7} "
                   f"{f(r.get('above_import_gib')):>7} {f(r.get('cuda_gib')):>6} {f(r.get('predicted_gib')):>7} "
                   f"{f(r.get('paper_gib')):>6}  {r.get('paper_source', '')}")
    return '\n'.join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--cases', nargs='*', default=None, help='case keys (default: all); --list shows them')
    ap.add_argument('--max-gib', type=float, default=6., help='run the paper setting directly only below this predicted peak')
    ap.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--no-save', action='store_true', help='print only (do not write the results files)')
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES: print(f"{c.key:24} {c.model}/{c.preset} {c.mode} batch {c.batch} x {c.shape}  {c.paper_source}")
        return
    unknown = [k for k in args.cases or [] if k not in CASE]
    if unknown: raise SystemExit(f"unknown case(s) {unknown}; valid: {', '.join(CASE)}")
    cases = [CASE[k] for k in args.cases] if args.cases else CASES
    rows, t0 = [], time.time()
    for c in cases:
        rows.append(measure(c, args.max_gib, args.device, args.threads))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.no_save: return rows
    cmd = 'OMP_NUM_THREADS=1 python benchmarks/memory.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    here = Path(__file__).resolve().parent
    old = {}
    try:
        from medseg_lab.results import load_results
        old = {r['key']: r for r in load_results('memory')['results']['rows']}
    except (FileNotFoundError, ValueError, KeyError): pass
    merged = {**old, **{r['key']: r for r in rows}}                    # a partial run updates its cases only
    ordered = [merged[c.key] for c in CASES if c.key in merged]
    from medseg_lab.results import save_results
    save_results('memory', dict(rows=ordered, readme_claims=README_CLAIMS), command=cmd.strip(),
                 setting=dict(max_gib=args.max_gib, device=args.device, threads=args.threads, minutes=round((time.time() - t0) / 60, 1)))
    (here / 'memory_results.txt').write_text(table(ordered) + '\n')
    return rows


if __name__ == '__main__':
    main()
