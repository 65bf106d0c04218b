"""Learning floors: the test-split Dice that each model family reaches after a fixed number of optimiser steps on the
bundled MNI152 tissue slices (background / grey matter / white matter, 64×64, held-out test slices), over several
seeds, next to the same runs with frozen weights. `tests/test_learning.py` reads the configurations and floors from
the results file this script writes, so CI fails when a family stops learning.

* trained: `train(TrainConfig(...))` for a fixed number of optimiser steps (one epoch of `iters_per_epoch` steps, poly
  schedule, AdamW), one CPU thread, every seed in `--seeds`;
* frozen: the same configuration with lr=1e-12 (`TrainConfig` needs lr > 0; the weights move by ~1e-12), for
  `UNTRAINED_STEPS` steps on every seed (what the cheap test runs) and for the full step count on the first seed
  (the trained check must fail for a model that does not learn, however long it runs);
* floor (`floor_for`): min over seeds − max(0.05, 2·std), rounded down to 0.01, and only where every seed learnt
  both classes (none below `COLLAPSED`) and the floor stays at least `MIN_GAP` above every frozen score; otherwise
  the floor is None, with the reason, and the test reports the family as uncalibrated.

CPU results are deterministic for a seed and a thread count; machine load changes only the wall time (the CPU seconds
recorded per run are for sizing the test, not results). Another CPU (instruction set, library build) rounds
differently and so behaves like another seed: that is what the margin is for.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_floors.py [--families unet vmunet ...] [--seeds 0 1 ...]
       [--jobs 2]
Writes nbs/results/learning_floors.json (`medseg_lab.results.save_results`); with --families, the other families'
entries already in the file are kept.
"""
import argparse, datetime, math, os, statistics, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp

COMMAND = 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_floors.py'
STEM = 'learning_floors'
FROZEN_LR = 1e-12      # "lr = 0": TrainConfig requires lr > 0
UNTRAINED_STEPS = 2    # steps of the cheap untrained run (BatchNorm statistics move, weights do not)
MIN_MARGIN = 0.05      # the floor lies at least this far (or 2 std) below the worst seed
MIN_GAP = 0.10         # ... and at least this far above every frozen score

# What every family shares: 64×64 axial slices of the bundled MNI152 tissue task (64 train, 16 val, 32 test slices),
# batch 8, AdamW at lr 1e-2 with the poly schedule over one epoch of `iters_per_epoch` steps, validation once at the
# end (so the evaluated weights are the last ones), the test metric Dice only, one CPU thread.
# The loss is the soft Dice over the two foreground classes, summed over the batch (nnU-Net's batch Dice), without
# cross-entropy. Why: the training slices come from the bottom and the top of the brain, where white matter is 7% of
# the pixels (background 76%, grey matter 17%) and many slices hold only a few white-matter pixels. With the default
# 'cedice' (CE over all pixels + per-slice Dice including the background), a seed whose first steps send the brain to
# grey matter never separates white matter within the run (UNet seed 6, CNM-UNet seeds 2-4: white-matter Dice 0 on
# train, val and test from step 10 on, at lr 1e-2 and 3e-3, with and without augmentation or 20 warm-up steps): the
# pixel-averaged CE is dominated by the majority classes, and a slice with a few white-matter pixels gives a weak,
# noisy per-slice Dice gradient. A batch Dice over the foreground weighs grey and white matter equally whatever their
# pixel counts; with CE kept ('cedice' with the same Dice options) UNet seed 6 learnt, CNM-UNet seed 2 still did not.
LOSS = dict(loss='dice', loss_kwargs=dict(include_background=False, batch_dice=True))
COMMON = dict(data='mni152_tissue', data_kwargs=dict(size=[64, 64]), spatial_dims=2, batch_size=8, epochs=1,
              lr=1e-2, **LOSS, eval_metrics=['dice'], num_threads=1, device='cpu', progress=False)
COLLAPSED = 0.2        # a calibration seed with a class below this test Dice has not learnt that class

# Per family: preset, overrides and step count, sized so that one run costs ~10-20 s of one CPU core.
FAMILIES = {
    'unet': dict(model='unet', preset='tiny', iters_per_epoch=100),
    'fuseunet': dict(model='fuseunet', preset='tiny', iters_per_epoch=200),   # the cheapest step: 200 steps ≈ 7 s
    # its decoder is a linear read-out of the encoder's skips: white matter separates later than in UNet (at 100
    # steps one seed in five was at white-matter Dice 0.49, the others at 0.83-0.89)
    'cnmunet': dict(model='cnmunet', preset='tiny', iters_per_epoch=150),
    # its MetaSSMs run at 1/2 resolution and below (the stem holds the full-resolution level, §3.3)
    'mmunet': dict(model='mmunet', preset='tiny', iters_per_epoch=80),
    # the tiny VM-UNet presets end in LayerNorm over dims[0] / patch_size = 2 channels at full resolution, which leaves
    # one feature per pixel (the two normalised channels are each other's negative): grey matter, the middle class,
    # is then never predicted. dims[0] = 16 gives 4 channels there.
    'vmunet': dict(model='vmunet', preset='tiny', model_kwargs=dict(dims=[16, 32, 64, 128]), iters_per_epoch=80),
    # VM-UNet's configuration. Its self-distillation (DSVM-UNet Eq. 2-5) pulls every encoder and decoder feature towards
    # the last decoder feature, which slows the segmentation down in a short run (seed 0: test Dice 0.55 at 80 steps,
    # 0.76 with distill='none'; 0.57 with α, β = 0.1, 0.05: AdamW's step hardly depends on the loss weight; 100 steps
    # gained ~0.01 at 1.4x the cost), so its floor is lower than VM-UNet's
    'dsvmunet': dict(model='dsvmunet', preset='tiny', model_kwargs=dict(dims=[16, 32, 64, 128]), iters_per_epoch=80),
    'lgmsnet': dict(model='lgmsnet', preset='tiny', iters_per_epoch=100),
}


def config_dict(family:str) -> dict:
    "The TrainConfig fields (without seed and out_dir) of `family`'s learning check."
    if family not in FAMILIES: raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return {**COMMON, **FAMILIES[family]}


def floor_for(trained:list, frozen:list, collapsed:list=()) -> tuple:
    """`(floor, why_none)`: min(trained) − max(MIN_MARGIN, 2·std), rounded down to 0.01; the floor is None (and
    `why_none` says why) when a seed in `collapsed` left a class unlearnt or the floor is not MIN_GAP above `frozen`."""
    if collapsed: return None, f"seeds {list(collapsed)} left a class below Dice {COLLAPSED}: not every seed learns"
    spread = statistics.stdev(trained) if len(trained) > 1 else 0.0
    floor = math.floor(100 * (min(trained) - max(MIN_MARGIN, 2 * spread))) / 100
    if floor < max(frozen) + MIN_GAP:
        return None, f"floor {floor:.2f} is not {MIN_GAP} above the best frozen score {max(frozen):.3f}"
    return floor, None


def _run(job:tuple) -> dict:
    "One training run in a fresh process: (family, seed, kind, overrides) -> scores and cost."
    import warnings, torch
    from medseg_lab.train import TrainConfig, train
    family, seed, kind, over = job
    warnings.filterwarnings('ignore')
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(**{**config_dict(family), **over}, seed=seed, out_dir=d)
        r = train(cfg)
        mean = r.metrics['test']['mean']
    return dict(family=family, seed=seed, kind=kind, steps=cfg.iters_per_epoch, lr=cfg.lr,
                dice=mean['dice/mean'], dice_per_class={k.split('/', 1)[1]: v for k, v in mean.items()
                                                        if k.startswith('dice/') and k != 'dice/mean'},
                final_train_loss=float(r.history['train_loss'].iloc[-1]), cpu_s=time.process_time() - c0,
                wall_s=time.perf_counter() - t0, torch_threads=torch.get_num_threads())


def _summary(family:str, runs:list, seeds:list, command:str) -> dict:
    "Per-family entry of the results file: the config, per-seed scores, their statistics, the floor, its provenance."
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _provenance import load_average
    from medseg_lab.results import _commit
    by = lambda kind: sorted((r for r in runs if r['kind'] == kind), key=lambda r: r['seed'])
    trained, untrained, frozen_full = by('trained'), by('untrained'), by('frozen_full')
    d = [r['dice'] for r in trained]
    frozen = [r['dice'] for r in untrained + frozen_full]
    collapsed = [r['seed'] for r in trained if min(r['dice_per_class'].values()) < COLLAPSED]
    floor, why = floor_for(d, frozen, collapsed)
    per_class_min = {c: min(r['dice_per_class'][c] for r in trained) for c in trained[0]['dice_per_class']}
    return dict(config=config_dict(family), steps=config_dict(family)['iters_per_epoch'], seeds=seeds,
                trained=dict(dice=d, mean=statistics.mean(d), std=statistics.stdev(d) if len(d) > 1 else 0.0,
                             min=min(d), max=max(d), per_class_min=per_class_min, collapsed_seeds=collapsed,
                             cpu_s_max=max(r['cpu_s'] for r in trained), per_seed=trained),
                untrained=dict(steps=UNTRAINED_STEPS, lr=FROZEN_LR, dice=[r['dice'] for r in untrained],
                               max=max(r['dice'] for r in untrained), per_seed=untrained),
                frozen_full=dict(lr=FROZEN_LR, dice=[r['dice'] for r in frozen_full], per_seed=frozen_full),
                measured_utc=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                command=command, commit=_commit(os.path.dirname(os.path.abspath(__file__))),
                load_average=load_average(),
                floor=floor, uncalibrated_because=why, margin_below_min=None if floor is None else min(d) - floor,
                gap_above_frozen=None if floor is None else floor - max(frozen))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--families', nargs='+', default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument('--seeds', nargs='+', type=int, default=list(range(5)))
    ap.add_argument('--jobs', type=int, default=1, help='runs in parallel (each single-threaded)')
    args = ap.parse_args()
    if len(args.seeds) < 5: ap.error('the floors need at least 5 seeds')
    from medseg_lab.results import save_results, load_results
    jobs = [job for f in args.families for job in
            [(f, s, 'trained', {}) for s in args.seeds]
            + [(f, s, 'untrained', dict(lr=FROZEN_LR, iters_per_epoch=UNTRAINED_STEPS)) for s in args.seeds]
            + [(f, args.seeds[0], 'frozen_full', dict(lr=FROZEN_LR))]]
    from medseg_lab.data import mni152_tissue
    for split in ('train', 'val', 'test'): mni152_tissue(2, split=split, size=(64, 64))   # fill the cache once
    runs = []
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context('spawn')) as ex:
        for r in ex.map(_run, jobs):
            runs.append(r)
            pc = ' '.join(f"{k} {v:.2f}" for k, v in r['dice_per_class'].items())
            print(f"{r['family']:9s} seed {r['seed']} {r['kind']:11s} {r['steps']:4d} steps  "
                  f"Dice {r['dice']:.4f} ({pc}) cpu {r['cpu_s']:.1f}s", flush=True)
    try:
        rec = load_results(STEM)
        # entries kept from an earlier run carry that run's provenance
        old = {f: {'command': rec['command'], 'commit': rec['commit'], **e}
               for f, e in rec['results']['families'].items()}
    except FileNotFoundError: old = {}
    command = COMMAND + (' --families ' + ' '.join(args.families) if args.families != list(FAMILIES) else '')
    fams = {**old, **{f: _summary(f, [r for r in runs if r['family'] == f], args.seeds, command)
                      for f in args.families}}
    fams = {f: fams[f] for f in FAMILIES if f in fams}
    results = dict(families=fams, frozen_lr=FROZEN_LR, untrained_steps=UNTRAINED_STEPS, min_margin=MIN_MARGIN,
                   min_gap=MIN_GAP, collapsed_below=COLLAPSED, floor_rule=floor_for.__doc__,
                   metric='test dice/mean (grey and white matter)')
    path = save_results(STEM, results, command=command,   # each family's entry says which command measured it
                        setting=dict(seeds=args.seeds, families=args.families, common=COMMON))
    print(f"\n{'family':9s} {'steps':>5s} {'mean':>6s} {'std':>6s} {'min':>6s} {'untrained':>9s} {'frozen':>7s} "
          f"{'floor':>6s}")
    for f, e in fams.items():
        fl = 'none' if e['floor'] is None else f"{e['floor']:.2f}"
        fz = max(e['frozen_full']['dice'], default=float('nan'))
        print(f"{f:9s} {e['steps']:5d} {e['trained']['mean']:6.3f} {e['trained']['std']:6.3f} "
              f"{e['trained']['min']:6.3f} {e['untrained']['max']:9.3f} {fz:7.3f} {fl:>6s}")
    print(f"written {path}")


if __name__ == '__main__': main()
