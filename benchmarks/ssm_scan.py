#!/usr/bin/env python
"""Benchmark `selective_scan` on CPU: the compiled kernel (backend="cpu") and the chunked PyTorch scan
(backend="torch") against the sequential oracle `selective_scan_reference`, forward and forward+backward, all measured
in the same run, plus the peak memory of forward+backward against the full (B, D, N, L) float32 state tensor.

    .venv/bin/python benchmarks/ssm_scan.py --out benchmarks/ssm_scan_results.json   # the committed results
    .venv/bin/python benchmarks/ssm_scan.py --shapes 64,64,16,672 --reps 5          # one shape
    git show HEAD:medseg_lab/ssm.py > /tmp/ssm_before.py                            # before/after a change of the
    .venv/bin/python benchmarks/ssm_scan.py --baseline-module /tmp/ssm_before.py    # PyTorch scan, in the same run

Default shapes: a VM-UNet stage-1 call at batch 16 (64, 64, 16, 672), and long sequences (1, 192, 16, 4096 and 32768;
2, 96, 16, 16384). Inputs are Mamba-like: A = -(1..N) per channel (S4D-real init), Δ = softplus(delta + bias) with Δ
in [1e-3, 0.1], B and C shared over channels (B, N, L), D = 1, no gate. Fast paths are timed as the best of --reps
runs (forward+backward: best of max(1, reps // 2)); the reference once per shape (it is slow). The reference's
forward+backward (autograd through L Python steps) takes minutes at L = 32768, so above --ref-backward-max-len it
is timed on the first that-many steps and scaled linearly in L (its cost per step is constant); such rows say
"extrapolated". The compiled kernel is loaded (compiled on first use) before timing; its load time is reported.

Peak memory is the growth of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) during one call, in
a fresh child process per shape and path (a long-lived process reuses freed heap, which hides the peak), with glibc's
MALLOC_MMAP_THRESHOLD_=131072 so that freed large blocks leave the RSS at once. It counts everything the call
allocates — the output, the inputs' gradients, saved states, temporaries and allocator slack — but not the inputs,
and not the gradient arriving at the output (allocated before the call, like the inputs: it is the caller's).
Ratios, never timed asserts.
"""
import argparse, importlib.util, json, math, os, platform, subprocess, sys, time
import torch
from _provenance import load_average, write_results   # benchmarks/_provenance.py
from medseg_lab.ssm import selective_scan, selective_scan_reference
from medseg_lab.ssm_cpu import cpu_kernel, cpu_kernel_status

def _rss_peak_reset():
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False

def _vm(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field): return int(line.split()[1]) * 1024
    return 0

def peak_rss_growth(fn):
    "Run fn(); return (result, seconds, peak RSS growth in bytes or None where VmHWM cannot be reset)."
    ok = _rss_peak_reset(); base = _vm('VmRSS')
    t = time.perf_counter(); out = fn(); dt = time.perf_counter() - t
    return out, dt, (_vm('VmHWM') - base) if ok else None

def make_inputs(b, d, n, l, seed=0):
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(u=torch.randn(b, d, l, generator=g), delta=0.1 * torch.randn(b, d, l, generator=g),
                A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1), B=torch.randn(b, n, l, generator=g),
                C=torch.randn(b, n, l, generator=g), D=torch.ones(d), delta_bias=dt + torch.log(-torch.expm1(-dt)),
                delta_softplus=True)

PATHS = {'torch': lambda **kw: selective_scan(**kw, backend='torch'),
         'kernel': lambda **kw: selective_scan(**kw, backend='cpu'),
         'reference': selective_scan_reference}

def fwd(f, kw):
    with torch.no_grad(): return f(**kw)

def leaves(kw): return {k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}

def fwd_bwd(f, kw, gy=None):
    "Forward + backward with upstream gradient gy (ones if None); returns y and the inputs' gradients."
    y = f(**kw)
    y.backward(torch.ones_like(y) if gy is None else gy)
    return y.detach(), [v.grad for v in kw.values() if isinstance(v, torch.Tensor)]

def best(fn, reps):
    ts = []
    for _ in range(max(1, reps)):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return min(ts), out

def warm_up(b, d, n, paths):
    "One small forward and forward+backward of each path: one-time costs (thread pools, autograd) stay out."
    kw = make_inputs(b, d, n, 64)
    for p in paths: fwd(PATHS[p], kw); fwd_bwd(PATHS[p], leaves(kw))

def memory_child(spec, mode, path):
    "Peak RSS growth (bytes) of one call in this fresh process."
    b, d, n, l = map(int, spec.split(','))
    kw = make_inputs(b, d, n, l)
    warm_up(b, d, n, [path])
    if mode == 'fwd': _, _, m = peak_rss_growth(lambda: fwd(PATHS[path], kw))
    else:
        kw, gy = leaves(kw), torch.ones(b, d, l)                    # the upstream gradient exists before the call
        _, _, m = peak_rss_growth(lambda: fwd_bwd(PATHS[path], kw, gy))
    print(m)

def child_peak(spec, mode, path):
    env = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '131072'}  # big blocks via mmap: freed memory leaves RSS at once
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--memory-child', spec, mode, path],
                         capture_output=True, text=True, check=True, env=env).stdout.split()
    return None if out[-1] == 'None' else int(out[-1])

def rel_err(a, b): return ((a - b).abs().max() / b.abs().max()).item()

def measure(spec, a, paths, base):
    b, d, n, l = map(int, spec.split(','))
    kw, full = make_inputs(b, d, n, l), b * d * n * l * 4
    warm_up(b, d, n, paths)
    r = dict(B=b, D=d, N=n, L=l, full_tensor_MB=full / 2**20)
    y = {}
    for p in paths: r[f'{p}_fwd_s'], y[p] = best(lambda: fwd(PATHS[p], kw), a.reps)
    if base is not None: r['baseline_torch_fwd_s'], _ = best(lambda: fwd(base, kw), a.reps)
    t = time.perf_counter(); y_ref = fwd(selective_scan_reference, kw); r['ref_fwd_s'] = time.perf_counter() - t
    for p in paths:
        r[f'{p}_fwd_speedup'] = r['ref_fwd_s'] / r[f'{p}_fwd_s']; r[f'{p}_fwd_max_rel_err'] = rel_err(y[p], y_ref)
    if a.fwd_only: return r
    g = {}
    for p in paths:
        r[f'{p}_fwd_bwd_s'], (_, g[p]) = best(lambda: fwd_bwd(PATHS[p], leaves(kw)), max(1, a.reps // 2))
    lr = min(l, a.ref_backward_max_len)
    kr = {k: (v[..., :lr] if isinstance(v, torch.Tensor) and v.shape[-1] == l else v) for k, v in kw.items()}
    t = time.perf_counter(); _, g_ref = fwd_bwd(selective_scan_reference, leaves(kr))
    r['ref_fwd_bwd_s'] = (time.perf_counter() - t) * l / lr
    r['ref_fwd_bwd_extrapolated_from_L'] = lr if lr < l else None
    for p in paths:
        r[f'{p}_fwd_bwd_speedup'] = r['ref_fwd_bwd_s'] / r[f'{p}_fwd_bwd_s']
        if lr == l: r[f'{p}_grad_max_rel_err'] = max(rel_err(x, x0) for x, x0 in zip(g[p], g_ref))
    if 'kernel' in paths and 'torch' in paths: r['kernel_over_torch_fwd_bwd'] = r['torch_fwd_bwd_s'] / r['kernel_fwd_bwd_s']
    if not a.no_memory:
        for p in paths:
            for mode in ('fwd', 'fwd_bwd'):
                m = child_peak(spec, mode, p)
                r[f'{p}_{mode}_peak_MB'] = None if m is None else m / 2**20
                r[f'{p}_{mode}_peak_over_full'] = None if m is None else m / full
    return r

def table(rows, paths, fwd_only):
    fmt = lambda v, f: format(v, f) if isinstance(v, (int, float)) and v is not None else 'n/a'
    out = ['   B    D   N      L | forward s: ' + '  '.join(f'{p:>9s}' for p in paths) + '       ref | ratio vs ref: '
           + '  '.join(f'{p:>7s}' for p in paths)]
    for r in rows:
        out.append(f"{r['B']:4d} {r['D']:4d} {r['N']:3d} {r['L']:6d} | {'':11s}" + '  '.join(fmt(r[f'{p}_fwd_s'], '9.4f') for p in paths)
                   + f" {r['ref_fwd_s']:9.3f} | {'':14s}" + '  '.join(fmt(r[f'{p}_fwd_speedup'], '6.1f') + 'x' for p in paths))
    if fwd_only: return out
    out += ['', '   B    D   N      L | fwd+bwd s: ' + '  '.join(f'{p:>9s}' for p in paths) + '       ref | ratio vs ref: '
            + '  '.join(f'{p:>7s}' for p in paths) + ' | kernel/torch | peak/full fwd+bwd: ' + ' '.join(f'{p:>6s}' for p in paths)]
    for r in rows:
        out.append(f"{r['B']:4d} {r['D']:4d} {r['N']:3d} {r['L']:6d} | {'':11s}" + '  '.join(fmt(r[f'{p}_fwd_bwd_s'], '9.4f') for p in paths)
                   + f" {r['ref_fwd_bwd_s']:9.3f} | {'':14s}" + '  '.join(fmt(r[f'{p}_fwd_bwd_speedup'], '6.1f') + 'x' for p in paths)
                   + f" | {fmt(r.get('kernel_over_torch_fwd_bwd'), '11.1f')}x | {'':18s} "
                   + ' '.join(fmt(r.get(f'{p}_fwd_bwd_peak_over_full'), '6.3f') for p in paths)
                   + (f"  (reference extrapolated from L={r['ref_fwd_bwd_extrapolated_from_L']})"
                      if r['ref_fwd_bwd_extrapolated_from_L'] else ''))
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shapes', nargs='+', default=['64,64,16,672', '1,192,16,4096', '1,192,16,32768', '2,96,16,16384'],
                   help='B,D,N,L tuples')
    p.add_argument('--reps', type=int, default=4, help='repetitions of the fast forward (best taken)')
    p.add_argument('--ref-backward-max-len', type=int, default=4096,
                   help='time the (very slow) reference fwd+bwd on at most this many steps and scale linearly in L')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch\'s choice)')
    p.add_argument('--memory-child', nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument('--baseline-module', default=None,
                   help='another ssm.py (e.g. `git show HEAD:medseg_lab/ssm.py`) whose torch forward is timed in the same run')
    p.add_argument('--fwd-only', action='store_true', help='forward only (no backward, no memory)')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory child processes')
    p.add_argument('--out', default=None, help='write the results as JSON here (and the printed tables beside it as .txt)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.memory_child: return memory_child(*a.memory_child)
    base = None
    if a.baseline_module:
        spec = importlib.util.spec_from_file_location('ssm_baseline', a.baseline_module)
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        base = lambda **kw: mod.selective_scan(**kw, backend='torch')
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
             f"{platform.processor() or platform.machine()}"]
    if (la := load_average()) is not None: lines.append(f"load average before: {la}")
    t = time.perf_counter(); kmod = cpu_kernel(); kload = time.perf_counter() - t
    lines.append(f"compiled CPU kernel: {cpu_kernel_status()} (this process: {kload:.1f} s)")
    print('\n'.join(lines), flush=True)
    paths = ['torch', 'kernel'] if kmod is not None else ['torch']
    rows = []
    for spec in a.shapes:
        r = measure(spec, a, paths, base)
        rows.append(r); print(json.dumps({k: (float(f'{v:.4g}') if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    out = table(rows, paths, a.fwd_only)
    if base is not None:
        out += [''] + [f"L={r['L']}: torch forward {r['baseline_torch_fwd_s']:.4f} s with {a.baseline_module} -> "
                       f"{r['torch_fwd_s']:.4f} s now" for r in rows]
    if (la := load_average()) is not None: out.append(f"load average after: {la}")
    out.append('targets: kernel fwd+bwd >= 5x the torch path at (64, 64, 16, 672) and >= 60x the reference at '
               '(1, 192, 16, 32768); fwd+bwd peak <= 0.25 of the full (B, D, N, L) float32 tensor')
    print('\n' + '\n'.join(out))
    if a.out:
        write_results(a.out, dict(torch=torch.__version__, threads=torch.get_num_threads(),
                                  cpu_kernel=cpu_kernel_status(), rows=rows), '\n'.join(lines + [''] + out))

if __name__ == '__main__': main()
