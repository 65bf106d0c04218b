#!/usr/bin/env python
"""One CPU training step of every registered model, timed and profiled, with ratios against UNet measured in one run.

    .venv/bin/python benchmarks/train_step.py --out benchmarks/train_step_results.json   # the committed results
    .venv/bin/python benchmarks/train_step.py --models unet vmunet --rounds 3            # a subset
    .venv/bin/python benchmarks/train_step.py --torch-scan                               # also the PyTorch scan path

A step is what `train` does per iteration: forward (with the auxiliary outputs a model trains with: DSVM-UNet's
distillation features), the loss (CE + Dice, plus DSVM-UNet's distillation terms), backward and an AdamW step. 2D: a
batch of 16 slices of the bundled lesion task at 96x112 (the model zoo's shape), every model at its `small` preset.
3D: a batch of 2 random 64^3 volumes, every model that builds in 3D at `small`.

Times are medians over `--rounds` rounds; in each round every model takes one step in turn (the order turned by one
model per round), so a change of machine load during the run hits all models alike: the ratio against UNet is taken
within each round, and the table gives its median and its range over the rounds (on a shared 2-core machine single
rounds differ by up to a third). DSVM-UNet, which is VM-UNet plus training-only distillation heads, is also compared
with VM-UNet round by round. One extra profiled step per model (torch.profiler) splits the step into: the selective
scan (the autograd ops `_KernelScan`/`_ChunkedScan` and their backward), convolutions (`aten::convolution` and
`aten::convolution_backward`), the optimizer step, and the rest. Shares are of the profiled step's wall time. With
`--torch-scan` the Mamba models are also timed with the compiled CPU kernel disabled (`MEDSEG_LAB_NO_CPU_KERNEL=1`
at run time: the chunked PyTorch scan), in the same rounds.
Ratios, never timed asserts.
"""
import argparse, json, os, platform, statistics, sys, time
import torch
from _provenance import load_average, write_results   # benchmarks/_provenance.py
from medseg_lab.models import MODELS, PRESETS, build_model
from medseg_lab.train import make_loss, distill_mode
from medseg_lab.losses import DistillTotalLoss
from medseg_lab.ssm_cpu import cpu_kernel, cpu_kernel_status

SCAN_EVENTS = ('_KernelScan', '_KernelScanBackward', '_ChunkedScan', '_ChunkedScanBackward')
CONV_EVENTS = ('aten::convolution', 'aten::convolution_backward')
MAMBA = ('vmunet', 'dsvmunet', 'mmunet')
PAIRS = (('dsvmunet', 'vmunet'),)   # a model and the one it adds training-only parts to: compared round by round

def batch_2d(n, size):
    "A real batch: `n` training slices of mni152_lesions at `size`."
    from medseg_lab.data import mni152_lesions
    ds = mni152_lesions(2, 'train', size=size)
    xs, ys = zip(*(ds[i] for i in range(n)))
    return torch.stack(xs), torch.stack(ys), ds.num_classes

def batch_3d(n, side, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, side, side, side, generator=g), torch.randint(0, classes, (n, side, side, side), generator=g), classes

def make_step(name, dims, x, y, classes):
    "A closure running one training step of `name` (small preset) on (x, y), or raise if the model does not build."
    torch.manual_seed(0)
    preset = 'small' if 'small' in PRESETS[name] else 'tiny'
    model = build_model(name, spatial_dims=dims, in_channels=1, out_channels=classes, preset=preset).train()
    loss_fn = make_loss('cedice')
    aux = distill_mode(model) != 'none'
    if aux: loss_fn = DistillTotalLoss(loss_fn, 1.0, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    def step():
        out = model(x, return_aux=True) if aux else model(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.profiler.record_function('optimizer_step'): opt.step()
    return step, preset

def profile_shares(step):
    "Wall time of one profiled step and the shares of scan, convolutions and optimizer in it."
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t = time.perf_counter(); step(); wall = time.perf_counter() - t
    tot = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    scan = sum(tot.get(k, 0.) for k in SCAN_EVENTS)
    conv = sum(tot.get(k, 0.) for k in CONV_EVENTS)
    optim = tot.get('optimizer_step', 0.)
    return dict(profiled_s=wall, scan_share=scan / wall, conv_share=conv / wall, optimizer_share=optim / wall,
                other_share=max(0., 1 - (scan + conv + optim) / wall))

def run_setting(label, dims, names, x, y, classes, rounds, torch_scan):
    "Median step times (interleaved rounds) and one profile per model; returns rows."
    steps, rows = {}, {}
    for m in names:
        for variant in ('kernel', 'torch-scan') if (torch_scan and m in MAMBA) else ('kernel',):
            try: steps[(m, variant)], preset = make_step(m, dims, x, y, classes)
            except Exception as e:   # no such dimensionality, ...
                rows[(m, variant)] = dict(model=m, setting=label, variant=variant, skipped=f'{type(e).__name__}: {e}')
                print(f'{label} {m}: skipped ({type(e).__name__}: {str(e)[:100]})', flush=True); break
            rows[(m, variant)] = dict(model=m, setting=label, variant=variant, preset=preset, times=[])
    live = [k for k in steps]
    def call(k):
        if k[1] == 'torch-scan': os.environ['MEDSEG_LAB_NO_CPU_KERNEL'] = '1'
        try: t = time.perf_counter(); steps[k](); return time.perf_counter() - t
        finally: os.environ.pop('MEDSEG_LAB_NO_CPU_KERNEL', None)
    for k in live: call(k)                                               # warm-up (first-call costs)
    for r in range(rounds):   # the order turns by one model per round: no model always runs right after another
        for k in live[r % len(live):] + live[:r % len(live)]: rows[k]['times'].append(call(k))
        print(f'{label}: round {r + 1}/{rounds} done', flush=True)
    for k in live:
        if k[1] == 'torch-scan': os.environ['MEDSEG_LAB_NO_CPU_KERNEL'] = '1'
        try: rows[k].update(profile_shares(steps[k]))
        finally: os.environ.pop('MEDSEG_LAB_NO_CPU_KERNEL', None)
        rows[k]['step_s'] = statistics.median(rows[k]['times'])
    base = rows.get(('unet', 'kernel'), {}).get('times')
    for k in live:   # the ratio within each round (same machine state), then the median and range over rounds
        ratios = [t / b for t, b in zip(rows[k]['times'], base)] if base else []
        rows[k]['ratio_vs_unet'] = statistics.median(ratios) if ratios else None
        rows[k]['ratio_range'] = [min(ratios), max(ratios)] if ratios else None
    for m, ref in PAIRS:   # e.g. DSVM-UNet's distillation heads: its step against VM-UNet's in the same round
        k, kr = (m, 'kernel'), (ref, 'kernel')
        if k in steps and kr in steps:
            ratios = [t / b for t, b in zip(rows[k]['times'], rows[kr]['times'])]
            rows[k]['paired'] = dict(model=ref, ratio=statistics.median(ratios), range=[min(ratios), max(ratios)],
                                     ratio_of_medians=rows[k]['step_s'] / rows[kr]['step_s'])
    return list(rows.values())

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS), help='registered model names (default: all)')
    p.add_argument('--rounds', type=int, default=15, help='timed rounds (median taken), after one warm-up round')
    p.add_argument('--batch-2d', type=int, default=16); p.add_argument('--size-2d', type=int, nargs=2, default=[96, 112])
    p.add_argument('--batch-3d', type=int, default=2); p.add_argument('--side-3d', type=int, default=64)
    p.add_argument('--no-3d', action='store_true', help='skip the 3D setting')
    p.add_argument('--torch-scan', action='store_true', help='also time the Mamba models on the chunked PyTorch scan')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch\'s choice)')
    p.add_argument('--out', default=None, help='write the results as JSON here (and a .txt table beside it)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    bad = [m for m in a.models if m not in MODELS]
    if bad: p.error(f'unknown model(s) {bad}; valid: {", ".join(MODELS)}')
    names = ['unet'] + [m for m in a.models if m != 'unet']             # the baseline is always measured
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
             f"{platform.processor() or platform.machine()}"]
    t = time.perf_counter(); cpu_kernel(); lines.append(f"compiled CPU kernel: {cpu_kernel_status()} ({time.perf_counter() - t:.1f} s)")
    if (la := load_average()) is not None: lines.append(f"load average before: {la}")
    print('\n'.join(lines), flush=True)
    x, y, classes = batch_2d(a.batch_2d, tuple(a.size_2d))
    rows = run_setting(f'2D {a.batch_2d}x1x{a.size_2d[0]}x{a.size_2d[1]}', 2, names, x, y, classes, a.rounds, a.torch_scan)
    if not a.no_3d:
        x, y, classes = batch_3d(a.batch_3d, a.side_3d)
        rows += run_setting(f'3D {a.batch_3d}x1x{a.side_3d}^3', 3, names, x, y, classes, a.rounds, a.torch_scan)
    if (la := load_average()) is not None: lines.append(f"load average after: {la}")
    head = (f"{'setting':18s} {'model':9s} {'preset':6s} {'scan':10s} | {'step s':>7s} {'x UNet':>7s} {'range':>11s} | "
            f"{'scan':>5s} {'conv':>5s} {'optim':>5s} {'other':>5s}")
    table = [head, '-' * len(head)]
    for r in rows:
        if 'skipped' in r: table.append(f"{r['setting']:18s} {r['model']:9s} skipped: {r['skipped'][:70]}"); continue
        lo, hi = r['ratio_range']
        table.append(f"{r['setting']:18s} {r['model']:9s} {r['preset']:6s} {r['variant']:10s} | {r['step_s']:7.3f} "
                     f"{r['ratio_vs_unet']:7.2f} {f'{lo:.2f}-{hi:.2f}':>11s} | {r['scan_share']:5.0%} "
                     f"{r['conv_share']:5.0%} {r['optimizer_share']:5.0%} {r['other_share']:5.0%}")
    pairs = [f"{r['setting']}: {r['model']} / {r['paired']['model']} in the same round: median "
             f"{r['paired']['ratio']:.3f} (range {r['paired']['range'][0]:.3f}-{r['paired']['range'][1]:.3f}; "
             f"ratio of the step medians {r['paired']['ratio_of_medians']:.3f})" for r in rows if 'paired' in r]
    legend = ("step s: median over rounds; x UNet: median over rounds of the ratio to UNet small in the same round "
              "(range: lowest-highest round); shares: of one profiled step (torch.profiler, CPU time of the ops).")
    text = '\n'.join(lines + [''] + table + [''] + pairs + ['', legend])
    print('\n' + text)
    if a.out:
        write_results(a.out, dict(torch=torch.__version__, threads=torch.get_num_threads(),
                                  cpu_kernel=cpu_kernel_status(), rows=rows), text)

if __name__ == '__main__': main()
