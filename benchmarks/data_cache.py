#!/usr/bin/env python
"""What the bundled data's caches and HD95's bounding-box crop buy, measured in one run.

The tests check *that* a second process reads the cache file instead of building the data, and that HD95 on the crop
equals HD95 on the full grid (counts and equalities, which hold on any machine). How much time that saves is a
benchmark's question, answered here as ratios against references timed in the same process:

* `mni152_tissue(2, 'train')` and `mni152_lesions(2, 'train')`: build (empty cache folder) vs read from the disk cache
  (in-memory caches cleared) vs served from memory;
* `hd95` with the bounding-box crop vs the same computation on the full grid, on one 64³ volume whose three classes
  fill it (the crop cannot help) and on a small lesion in a 128³ volume (the case the crop is for).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_cache.py [--reps 3] [--out benchmarks/data_cache_results.json]

Absolute times depend on the machine and its load; the ratios are what to compare.
"""
import argparse, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _best(fn, reps):
    "Best of `reps` wall times of `fn()` (seconds), and its last result."
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out


def cache_timings(reps:int) -> dict:
    "Build vs disk vs memory for the two bundled data sets, in a fresh cache folder."
    os.environ['MEDSEG_LAB_CACHE'] = tempfile.mkdtemp(prefix='medseg_bench_cache_')
    from medseg_lab.data import mni152
    def clear(*fns):
        for f in fns: f.cache_clear()
    out = {}
    for name, call, caches in (
            ('mni152_tissue', lambda: mni152.mni152_tissue(2, 'train'), (mni152._tissue_cached,)),
            ('mni152_lesions', lambda: mni152.mni152_lesions(2, 'train', seed=0), (mni152._lesions_cached,))):
        clear(mni152._mni152_base_cached, *caches)
        for p in Path(os.environ['MEDSEG_LAB_CACHE']).glob(f'{name}_*'): p.unlink()
        t0 = time.perf_counter(); call(); build = time.perf_counter() - t0           # base cached after the first
        def from_disk():
            clear(*caches); return call()
        disk, _ = _best(from_disk, reps)
        memory, _ = _best(call, reps)
        out[name] = dict(build_s=build, disk_s=disk, memory_s=memory, build_over_disk=build / disk,
                         disk_over_memory=disk / memory)
    return out


def _full_grid_hd95(P, T, sp):
    "HD95 per class on the whole grid: what `hd95` computes, without its bounding-box crop."
    from scipy import ndimage
    from medseg_lab.metrics import _surface, _q95
    out = []
    for c in range(len(P)):
        sp_, st_ = _surface(P[c]), _surface(T[c])
        out.append(max(_q95(ndimage.distance_transform_edt(~st_, sampling=sp)[sp_]),
                       _q95(ndimage.distance_transform_edt(~sp_, sampling=sp)[st_])))
    return out


def hd95_timings(reps:int) -> dict:
    "HD95 cropped (the library) vs the full grid: classes filling a 64³ volume, and one small lesion in 128³."
    from medseg_lab.metrics import hd95
    g = torch.Generator().manual_seed(1)
    noise = F.avg_pool3d(torch.rand(2, 4, 64, 64, 64, generator=g), 5, stride=1, padding=2)
    blobs = (noise[0].argmax(0), (0.6 * noise[0] + 0.4 * noise[1]).argmax(0), 4)
    t, p = torch.zeros(128, 128, 128, dtype=torch.long), torch.zeros(128, 128, 128, dtype=torch.long)
    t[60:70, 60:72, 58:68] = 1; p[62:71, 61:72, 58:69] = 1
    out, sp = {}, (1.5, 1., 1.)
    for name, (t, p, k) in (('blobs_64cubed_3_classes', blobs), ('lesion_128cubed', (t, p, 2))):
        P, T = (F.one_hot(a, k).movedim(-1, 0)[1:].numpy().astype(bool) for a in (p, t))
        cropped_s, h = _best(lambda: hd95(p[None], t[None], num_classes=k, spacing=sp), reps)
        full_s, ref = _best(lambda: _full_grid_hd95(P, T, sp), reps)
        assert np.allclose(h[0].numpy(), ref, atol=1e-5), (h, ref)
        out[name] = dict(cropped_s=cropped_s, full_grid_s=full_s, full_over_cropped=full_s / cropped_s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--out', default=str(Path(__file__).with_name('data_cache_results.json')))
    a = ap.parse_args()
    res = dict(machine=dict(python=platform.python_version(), platform=platform.platform(), torch=torch.__version__,
                            threads=torch.get_num_threads(), cpus=os.cpu_count()),
               command=' '.join([Path(sys.executable).name] + sys.argv), reps=a.reps,
               cache=cache_timings(a.reps), hd95=hd95_timings(a.reps))
    for name, r in res['cache'].items():
        print(f"{name:15s} build {r['build_s']:7.2f} s | disk {r['disk_s']:6.3f} s | memory {r['memory_s'] * 1e3:7.2f} ms"
              f" | build/disk {r['build_over_disk']:6.1f}x, disk/memory {r['disk_over_memory']:7.1f}x")
    for name, h in res['hd95'].items():
        print(f"hd95 {name:24s} cropped {h['cropped_s']:.3f} s, full grid {h['full_grid_s']:.3f} s "
              f"(full/cropped {h['full_over_cropped']:.1f}x)")
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"written {a.out}")


if __name__ == '__main__':
    main()
