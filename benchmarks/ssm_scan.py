#!/usr/bin/env python
"""Benchmark medseg_lab.ssm.selective_scan(backend="torch") and the compiled forward kernel (backend="cpu") against the
sequential oracle selective_scan_reference, all measured in the same run (issue 3). Prints forward and forward+backward times, their ratios, and the peak
memory of the fast scan against the full (B, D, N, L) float32 tensor.

    .venv/bin/python benchmarks/ssm_scan.py                       # the issue's three shapes
    .venv/bin/python benchmarks/ssm_scan.py --shapes 1,192,16,4096 --out bench.json
    git show HEAD:medseg_lab/ssm.py > /tmp/ssm_before.py       # before/after a change, in the same run:
    .venv/bin/python benchmarks/ssm_scan.py --baseline-module /tmp/ssm_before.py
    .venv/bin/python benchmarks/ssm_scan.py --fwd-only           # forward only (torch, cpu kernel, reference)

Inputs are Mamba-like: A = -(1..N) per channel (S4D-real init), Δ = softplus(delta + bias) with Δ in [1e-3, 0.1],
B and C shared over channels (B, N, L), D = 1, no gate. The reference is timed once per shape (it is slow); the
fast scan is timed as the best of --reps runs. Peak memory is the growth of the process's peak RSS (VmHWM, reset
through /proc/self/clear_refs) during one call, which also counts the inputs' gradients and allocator slack;
the scan's own largest intermediate is block_elements float32 values by construction. Peak memory is measured in a fresh
child process per shape (a long-lived process reuses freed heap, which hides the peak), with glibc's
MALLOC_MMAP_THRESHOLD_=131072 so that freed large blocks leave the RSS at once instead of fragmenting the heap
(without it, RSS grows with the number of blocks although live tensor memory does not). The reference's
forward+backward (autograd through L Python steps) takes minutes at L = 32768, so above --ref-backward-max-len it is
timed on the first that-many steps and scaled linearly in L (its cost per step is constant); such rows are marked
"extrapolated". The compiled kernel (forward only, inference) is loaded -- compiled on first use -- before timing; the
load time is reported separately (`cpu_kernel_load_s`); it is skipped, with the reason, where it cannot be built.
Ratios, never timed asserts.
"""
import argparse, importlib.util, json, math, os, platform, subprocess, sys, time
import torch
from medseg_lab.ssm import selective_scan, selective_scan_reference, cpu_kernel, cpu_kernel_status

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

def fwd(f, kw):
    with torch.no_grad(): return f(**kw)

def fwd_bwd(f, kw):
    kw = {k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    y = f(**kw); y.backward(torch.ones_like(y))
    return y.detach(), [v.grad for v in kw.values() if isinstance(v, torch.Tensor)]

def warm_up(b, d, n):
    "One small forward and forward+backward of each scan: one-time costs (thread pools, autograd) stay out of the numbers."
    kw = make_inputs(b, d, n, 64)
    for f in (lambda **k: selective_scan(**k, backend='torch'), selective_scan_reference):
        fwd(f, kw); fwd_bwd(f, kw)

def memory_child(spec, mode):
    "Peak RSS growth (bytes) of one fast-scan call in this fresh process."
    b, d, n, l = map(int, spec.split(','))
    kw = make_inputs(b, d, n, l)
    fast = lambda **k: selective_scan(**k, backend='torch')
    warm_up(b, d, n)
    if mode == 'fwd_bwd':
        kw = {k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    _, _, m = peak_rss_growth(lambda: fwd(fast, kw) if mode == 'fwd' else fwd_bwd(fast, kw))
    print(m)

def child_peak(spec, mode):
    env = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '131072'}  # big blocks via mmap: freed memory leaves RSS at once
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--memory-child', spec, mode],
                         capture_output=True, text=True, check=True, env=env).stdout.split()
    return None if out[-1] == 'None' else int(out[-1])

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shapes', nargs='+', default=['1,192,16,4096', '1,192,16,32768', '2,96,16,16384'],
                   help='B,D,N,L tuples')
    p.add_argument('--reps', type=int, default=2, help='repetitions of the fast forward (best taken); fwd+bwd runs once')
    p.add_argument('--ref-backward-max-len', type=int, default=4096,
                   help='time the (very slow) reference fwd+bwd on at most this many steps and scale linearly in L')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch\'s choice)')
    p.add_argument('--memory-child', nargs=2, default=None, help=argparse.SUPPRESS)
    p.add_argument('--baseline-module', default=None,
                   help='another ssm.py (e.g. `git show HEAD:medseg_lab/ssm.py`) whose fast forward is timed in the same run')
    p.add_argument('--fwd-only', action='store_true', help='skip forward+backward and peak-memory measurements')
    p.add_argument('--out', default=None, help='write the results as JSON here')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.memory_child: return memory_child(*a.memory_child)
    fast = lambda **kw: selective_scan(**kw, backend='torch')
    base = None
    if a.baseline_module:
        spec = importlib.util.spec_from_file_location('ssm_baseline', a.baseline_module)
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        base = lambda **kw: mod.selective_scan(**kw, backend='torch')
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    try: print(f"load average before: {os.getloadavg()}")
    except OSError: pass
    t = time.perf_counter(); kmod = cpu_kernel(); kload = time.perf_counter() - t
    print(f"compiled CPU kernel: {cpu_kernel_status()} ({kload:.1f} s)")
    ck = (lambda **kw: selective_scan(**kw, backend='cpu')) if kmod is not None else None
    rows = []
    for spec in a.shapes:
        b, d, n, l = map(int, spec.split(','))
        kw = make_inputs(b, d, n, l)
        full = b * d * n * l * 4
        warm_up(b, d, n)
        r = dict(B=b, D=d, N=n, L=l, full_tensor_MB=full / 2**20)
        t_fast = []
        for _ in range(a.reps):
            t = time.perf_counter(); y_fast = fwd(fast, kw); t_fast.append(time.perf_counter() - t)
        r['fast_fwd_s'] = min(t_fast)
        if ck is not None:
            fwd(ck, make_inputs(b, d, n, 64)); t_ck = []
            for _ in range(a.reps):
                t = time.perf_counter(); y_ck = fwd(ck, kw); t_ck.append(time.perf_counter() - t)
            r['cpu_kernel_fwd_s'], r['cpu_kernel_load_s'] = min(t_ck), kload
        if base is not None:
            fwd(base, kw); t_base = []
            for _ in range(a.reps):
                t = time.perf_counter(); fwd(base, kw); t_base.append(time.perf_counter() - t)
            r['baseline_fwd_s'] = min(t_base)
        t = time.perf_counter(); y_ref = fwd(selective_scan_reference, kw); r['ref_fwd_s'] = time.perf_counter() - t
        r['fwd_speedup'] = r['ref_fwd_s'] / r['fast_fwd_s']
        if ck is not None:
            r['cpu_kernel_fwd_speedup'] = r['ref_fwd_s'] / r['cpu_kernel_fwd_s']
            r['cpu_kernel_fwd_max_rel_err'] = ((y_ck - y_ref).abs().max() / y_ref.abs().max()).item()
        if base is not None: r['baseline_fwd_speedup'] = r['ref_fwd_s'] / r['baseline_fwd_s']
        r['fwd_max_rel_err'] = ((y_fast - y_ref).abs().max() / y_ref.abs().max()).item()
        if a.fwd_only:
            rows.append(r); print(json.dumps({k: (float(f'{v:.4g}') if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
            continue
        t = time.perf_counter(); yb, gb = fwd_bwd(fast, kw); r['fast_fwd_bwd_s'] = time.perf_counter() - t
        lr = min(l, a.ref_backward_max_len)
        kr = {k: (v[..., :lr] if isinstance(v, torch.Tensor) and v.shape[-1] == l else v) for k, v in kw.items()}
        t = time.perf_counter(); yr, gr = fwd_bwd(selective_scan_reference, kr); r['ref_fwd_bwd_s'] = (time.perf_counter() - t) * l / lr
        r['ref_fwd_bwd_extrapolated_from_L'] = lr if lr < l else None
        r['fwd_bwd_speedup'] = r['ref_fwd_bwd_s'] / r['fast_fwd_bwd_s']
        if lr == l: r['grad_max_rel_err'] = max(((g1 - g0).abs().max() / g0.abs().max()).item() for g1, g0 in zip(gb, gr))
        del yr, gr, yb, gb
        for mode in ('fwd', 'fwd_bwd'):
            m = child_peak(spec, mode)
            r[f'fast_{mode}_peak_MB'] = None if m is None else m / 2**20
            r[f'{mode}_peak_over_full'] = None if m is None else m / full
        rows.append(r)
        print(json.dumps({k: (float(f'{v:.4g}') if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    print('\n   B    D   N      L | fwd: torch s  cpu-kernel s   ref s | ratio torch  ratio cpu-kernel')
    for r in rows:
        print(f"{r['B']:4d} {r['D']:4d} {r['N']:3d} {r['L']:6d} | {r['fast_fwd_s']:12.3f} {r.get('cpu_kernel_fwd_s', float('nan')):13.3f}"
              f" {r['ref_fwd_s']:7.2f} | {r['fwd_speedup']:10.1f}x {r.get('cpu_kernel_fwd_speedup', float('nan')):16.1f}x")
    if a.fwd_only: rows_bwd = []
    else: rows_bwd = rows
    if rows_bwd: print('\n   B    D   N      L | fwd: fast s  ref s  ratio | fwd+bwd: fast s  ref s  ratio | peak/full fwd fwd+bwd')
    for r in rows_bwd:
        print(f"{r['B']:4d} {r['D']:4d} {r['N']:3d} {r['L']:6d} | {r['fast_fwd_s']:9.3f} {r['ref_fwd_s']:7.2f} {r['fwd_speedup']:6.1f}x |"
              f" {r['fast_fwd_bwd_s']:13.3f} {r.get('ref_fwd_bwd_s', float('nan')):7.2f} {r.get('fwd_bwd_speedup', float('nan')):6.1f}x |"
              f" {r.get('fwd_peak_over_full') or float('nan'):9.3f} {r.get('fwd_bwd_peak_over_full') or float('nan'):7.3f}"
              + ("  (reference fwd+bwd extrapolated from L=%d)" % r['ref_fwd_bwd_extrapolated_from_L'] if r['ref_fwd_bwd_extrapolated_from_L'] else ""))
    if base is not None:
        for r in rows: print(f"L={r['L']}: forward ratio vs reference {r['baseline_fwd_speedup']:.1f}x with {a.baseline_module} -> "
                             f"{r['fwd_speedup']:.1f}x now ({r['baseline_fwd_s']:.3f} s -> {r['fast_fwd_s']:.3f} s)")
    try: print(f"load average after: {os.getloadavg()}")
    except OSError: pass
    print('targets at L=32768: fwd >= 10x, fwd+bwd >= 5x, peak <= 0.25 of the full (B, D, N, L) float32 tensor')
    if a.out:
        with open(a.out, 'w') as f: json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu_kernel=cpu_kernel_status(),
                                        rows=rows), f, indent=1)

if __name__ == '__main__': main()
