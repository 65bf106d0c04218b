"""Every model family learns: after a fixed number of optimiser steps on the bundled MNI152 tissue slices, the
test-split Dice (grey and white matter) is above a floor; the same check fails for an untrained model.

The configurations and floors come from `nbs/results/learning_floors.json`, written by
`benchmarks/learning_floors.py`: each family trained over several seeds, and the same runs with frozen weights
(lr=1e-12). A floor lies a margin (≥ 0.05 or 2 std) below the worst seed and ≥ 0.10 above every frozen score, and
exists only where every calibration seed learnt both classes. The runs are single-threaded on CPU with a pinned seed,
so they are deterministic on a given machine; another CPU rounds differently, which the margin over seeds covers.
"""
import statistics
import warnings

import pytest
from conftest import load_script

from medseg_lab.models import MODELS
from medseg_lab.results import load_results
from medseg_lab.train import TrainConfig, train

REC = load_results('learning_floors')
RES = REC['results']
CAL = RES['families']
TEST_SEED = 0   # one of the calibration seeds: its calibrated score is in the results file
FAMILIES = sorted(MODELS)


def _benchmark():
    "benchmarks/learning_floors.py as a module (it holds the configurations the floors were measured for)."
    return load_script('benchmarks/learning_floors.py', 'learning_floors')


def _entry(family) -> dict:
    "The family's calibration; fails (not skips) when the family has none or no floor."
    if family not in CAL:
        pytest.fail(f"{family} is uncalibrated: no entry in nbs/results/learning_floors.json; run "
                    f"`{REC['command'].split(' --families')[0]} --families {family}`")
    e = CAL[family]
    if e['floor'] is None:
        pytest.fail(f"{family} is uncalibrated: {e['uncalibrated_because']} ({_calibration(family)})")
    return e


def _config(family, tmp_path, **over) -> TrainConfig:
    "The calibrated configuration of `family` with the test seed, writing its run under `tmp_path`."
    return TrainConfig(**{**CAL[family]['config'], **over}, seed=TEST_SEED, out_dir=str(tmp_path))


def _test_dice(cfg:TrainConfig) -> dict:
    "Train as `cfg` says; the test-split mean Dice per foreground class and their mean ('mean')."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # e.g. the loss watch's notes about early loss spikes
        m = train(cfg).metrics['test']['mean']
    return {k.split('/', 1)[1]: v for k, v in m.items() if k.startswith('dice/')}


def _calibration(family) -> str:
    e = CAL[family]
    t = e['trained']
    return (f"calibrated over seeds {e['seeds']}: {t['mean']:.3f} ± {t['std']:.3f} (min {t['min']:.3f}); "
            f"untrained ≤ {e['untrained']['max']:.3f}; measured {e['measured_utc']} by `{e['command']}` "
            f"at commit {str(e['commit'])[:12]}")


def test_every_family_has_a_floor_with_margins():
    "Each family of MODELS is calibrated, every seed learnt, and the floor is below the worst seed, above the frozen."
    assert sorted(CAL) == FAMILIES, f"calibrate the missing families: {sorted(set(FAMILIES) ^ set(CAL))}"
    for family, e in CAL.items():
        assert e['floor'] is not None, f"{family} is uncalibrated: {e['uncalibrated_because']} ({_calibration(family)})"
        d, frozen = e['trained']['dice'], e['untrained']['dice'] + e['frozen_full']['dice']
        assert len(d) >= 5 and TEST_SEED in e['seeds'] and len(d) == len(e['seeds']), family
        assert not e['trained']['collapsed_seeds'], family
        worst_class = min(min(r['dice_per_class'].values()) for r in e['trained']['per_seed'])
        assert worst_class >= RES['collapsed_below'], family
        assert e['floor'] <= min(d) - max(RES['min_margin'], 2 * statistics.stdev(d)) + 1e-9, family
        assert e['floor'] >= max(frozen) + RES['min_gap'] - 1e-9, family
        assert e['config']['iters_per_epoch'] == e['steps'] and e['config']['epochs'] == 1, family
        assert e['config'].get('time_budget_s') is None, f"{family}: the check runs a fixed number of steps"
        assert e['config']['num_threads'] == 1, f"{family}: one thread, so that the run is deterministic"


def test_floors_were_measured_for_the_benchmarks_configurations():
    "The results file holds the configurations benchmarks/learning_floors.py trains now (else: recalibrate)."
    bench = _benchmark()
    for family in CAL:
        assert CAL[family]['config'] == bench.config_dict(family), (
            f"{family}: the configuration in benchmarks/learning_floors.py changed since the floors were measured; "
            f"rerun `{bench.COMMAND} --families {family}`")
        TrainConfig(**CAL[family]['config'])   # valid fields and values


@pytest.mark.parametrize('family', FAMILIES)
def test_untrained_model_fails_the_floor(family, tmp_path):
    "The check can fail: the same configuration with frozen weights (lr=1e-12, 2 steps) scores below the floor."
    e = _entry(family)
    dice = _test_dice(_config(family, tmp_path, lr=RES['frozen_lr'], iters_per_epoch=RES['untrained_steps']))
    assert dice['mean'] < e['floor'], f"{family}: an untrained model scores {dice['mean']:.3f}, not below the floor"


@pytest.mark.parametrize('family', FAMILIES)
def test_family_learns(family, tmp_path):
    "A fixed number of optimiser steps on real MRI slices lifts the test Dice above the family's floor, every class."
    e = _entry(family)
    dice = _test_dice(_config(family, tmp_path))
    shown = ', '.join(f"{c} {v:.3f}" for c, v in dice.items() if c != 'mean')
    assert dice['mean'] > e['floor'], (f"{family} no longer learns: test Dice {dice['mean']:.3f} ({shown}) after "
                                       f"{e['steps']} steps is not above the floor {e['floor']:.2f} "
                                       f"({_calibration(family)})")
    assert min(v for c, v in dice.items() if c != 'mean') >= RES['collapsed_below'], (
        f"{family} leaves a class unlearnt: test Dice {shown} after {e['steps']} steps ({_calibration(family)})")
