#!/usr/bin/env python
"""Benchmark the own-data pipeline: preprocessing throughput (cases/s, from a cold cache, with 0 and 2 worker processes,
and the cached rerun) and the patch loader's wait per batch as a fraction of one training step of the UNet `small`
preset on 3D patches, measured in the same run.

    .venv/bin/python benchmarks/data_pipeline.py                       # writes benchmarks/data_pipeline_results.{json,txt}
    .venv/bin/python benchmarks/data_pipeline.py --cases 4 --steps 6   # quicker

Data: the bundled MNI152 sample written as an nnU-Net v2 raw folder (`write_sample_folder`: int16 CT-like values,
1 x 1 x 3 mm, oblique flipped affines), with the in-plane voxel size of every other case rewritten to 0.8 mm so that
preprocessing really resamples (to the median spacing; those cases are anisotropic beyond 3:1 and take the separate-z
path: order 3 in-plane, nearest along z). Loader: `patch_loader` over the preprocessed cases with nnU-Net's foreground
oversampling and the training augmentation (`make_augmentation(3)`: flips, 90 degree rotations, small affine), batch 2
of the plan's patch; the wait is the time `next(loader)` blocks, the step is forward + backward + AdamW step of
UNet `small` on that batch. Steps after --warmup are averaged. Ratios within one run; no timed asserts anywhere.
"""
import argparse, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch


def build_folder(root, n_cases, size):
    import nibabel as nib
    from medseg_lab.data import write_sample_folder
    write_sample_folder(root, 'nnunet_v2', n_cases=n_cases, n_test=0, size=size, seed=0)
    for i, f in enumerate(sorted((root / 'imagesTr').glob('*.nii.gz'))):
        if i % 2: continue
        for g in (f, root / 'labelsTr' / f.name.replace('_0000', '')):
            img = nib.load(str(g)); A = img.affine.copy(); A[:3, :2] *= 0.8
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj), A), str(g))
    return root


def time_preprocessing(root, cache, workers):
    from medseg_lab.data import dataset_from_folder, plan_dataset, preprocess_dataset
    ds = dataset_from_folder(root)
    t = time.perf_counter(); plan = plan_dataset(ds, progress=False, num_workers=workers); t_plan = time.perf_counter() - t
    rows = {}
    for w in workers_list(workers):
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter(); pre = preprocess_dataset(ds, plan, cache_root=cache, num_workers=w, progress=False)
        rows[f'cold_{w}_workers'] = dict(seconds=time.perf_counter() - t, computed=pre.n_computed)
    t = time.perf_counter(); pre = preprocess_dataset(ds, plan, cache_root=cache, num_workers=0, progress=False)
    rows['cached'] = dict(seconds=time.perf_counter() - t, computed=pre.n_computed)
    for r in rows.values(): r['cases_per_s'] = len(ds) / r['seconds']
    return plan, pre, t_plan, rows


def workers_list(w): return sorted({0, w})


def time_loader(pre, patch, batch, steps, warmup, workers, threads):
    from medseg_lab.data import patch_loader
    from medseg_lab.models import build_model
    from medseg_lab.train import make_augmentation, make_loss
    torch.manual_seed(0); torch.set_num_threads(threads)
    model = build_model('unet', spatial_dims=3, in_channels=pre.in_channels, out_channels=pre.num_classes, preset='small')
    opt, loss_fn = torch.optim.AdamW(model.parameters(), 1e-3), make_loss('cedice')
    loader = patch_loader(pre, patch, batch, steps + warmup, seed=0, epoch=0, augment=make_augmentation(3), num_workers=workers)
    waits, step_s = [], []
    it = iter(loader)
    for k in range(steps + warmup):
        t = time.perf_counter(); x, y = next(it); w = time.perf_counter() - t
        t = time.perf_counter()
        loss = loss_fn(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
        s = time.perf_counter() - t
        if k >= warmup: waits.append(w); step_s.append(s)
    del it
    return dict(loader_workers=workers, wait_s=float(np.mean(waits)), step_s=float(np.mean(step_s)),
                wait_over_step=float(np.mean(waits) / np.mean(step_s)), steps=steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cases', type=int, default=8); ap.add_argument('--size', type=int, nargs=3, default=[96, 112, 96])
    ap.add_argument('--workers', type=int, default=2, help='preprocessing processes compared with 0')
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--batch', type=int, default=2); ap.add_argument('--patch', type=int, nargs=3, default=None,
                    help="3D patch (default: the plan's for UNet small, 2 GB)")
    ap.add_argument('--threads', type=int, default=min(2, os.cpu_count() or 1), help='torch threads of the train step')
    ap.add_argument('--out', default=str(Path(__file__).with_name('data_pipeline_results')))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault('MEDSEG_LAB_CACHE', str(tmp / 'cache'))
    load0 = os.getloadavg()
    root = build_folder(tmp / 'Dataset900_Bench', a.cases, tuple(a.size))
    plan, pre, t_plan, pre_rows = time_preprocessing(root, tmp / 'pre', a.workers)
    patch = a.patch or plan.patch_size
    loader_rows = [time_loader(pre, patch, a.batch, a.steps, a.warmup, w, a.threads) for w in (0, 1, 2)]
    rec = dict(command=' '.join(['benchmarks/data_pipeline.py', *sys.argv[1:]]), torch=torch.__version__,
               machine=dict(cpus=os.cpu_count(), platform=platform.platform(), load_before=load0, load_after=os.getloadavg()),
               data=dict(cases=a.cases, block_mm=a.size, shapes=[list(e['properties']['shape_before_crop']) for e in pre.entries],
                         target_spacing=plan.target_spacing, separate_axis=[e['properties']['separate_axis'] for e in pre.entries]),
               plan_seconds=t_plan, preprocessing=pre_rows, patch=list(patch), batch=a.batch, threads=a.threads, loader=loader_rows)
    Path(a.out + '.json').write_text(json.dumps(rec, indent=1) + '\n')
    lines = [f"{rec['command']}   torch {torch.__version__}, {os.cpu_count()} CPUs, load average before {tuple(round(v, 1) for v in load0)}",
             f"data: {a.cases} cases, shapes {rec['data']['shapes'][:2]}..., target spacing {plan.target_spacing}, "
             f"separate-z cases {sum(s is not None for s in rec['data']['separate_axis'])}",
             f"plan (fingerprint + rules, {a.workers} workers): {t_plan:.2f} s",
             'preprocessing       seconds  cases/s  computed']
    lines += [f"  {k:<16} {r['seconds']:8.2f} {r['cases_per_s']:8.2f} {r['computed']:9d}" for k, r in pre_rows.items()]
    lines += [f"loader vs UNet small 3D train step (batch {a.batch}, patch {list(patch)}, {a.threads} torch threads)",
              'loader workers   wait/batch s   step s   wait/step']
    lines += [f"  {r['loader_workers']:<14} {r['wait_s']:12.4f} {r['step_s']:8.3f} {100 * r['wait_over_step']:10.1f} %" for r in loader_rows]
    lines.append(f"load average after {tuple(round(v, 1) for v in os.getloadavg())}; target: wait/step <= 10 %")
    Path(a.out + '.txt').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
