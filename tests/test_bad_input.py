"""Bad input never becomes a silent wrong answer, nor a crash without a message.

Every case of the bad-input campaign over the public API sits in `CASES` below: the call, and what it must do now,
either raise an exception whose message contains the sentence quoted (a clear error that says what to do), or give
the right answer (checked). `python tests/test_bad_input.py` prints each case with the message it gives.
Cases that need a process of their own live beside the code they test:

- run folders under faults (SIGKILL at every write then resume, two concurrent resumes, the umask, failed runs,
  resume on top of results): `tests/test_train.py`;
- a read-only or foreign cache folder, and a cache written by other code: `tests/test_data_offline.py`.
"""
import json, math, os, sys, warnings
from pathlib import Path
import pytest
import torch
import torch.nn as nn


def _cfg(**kw):
    from medseg_lab.train import TrainConfig
    return TrainConfig(**kw)


def _tiny_run(tmp, **kw):
    from medseg_lab.train import TrainConfig
    base = dict(model='unet', preset='tiny', data='phantom', data_kwargs=dict(size=32), epochs=2, batch_size=4,
                iters_per_epoch=2, out_dir=str(tmp), name='bad', progress=False, eval_metrics=['dice'], num_threads=1)
    return TrainConfig(**{**base, **kw})


def _model(name, sd=2, out=3, **kw):
    from medseg_lab.models import build_model
    return build_model(name, spatial_dims=sd, preset=kw.pop('preset', 'tiny'), out_channels=out, **kw)


def _scan_takes_empty_batches() -> str:
    "'error' / 'empty' when selective_scan handles B=0 itself; '' when it still crashes (the scan is fixed elsewhere)."
    from medseg_lab.ssm import selective_scan
    u = torch.zeros(0, 2, 4)
    try: y = selective_scan(u, u, -torch.ones(2, 3), torch.zeros(0, 3, 4), torch.zeros(0, 3, 4))
    except ValueError as e: return 'error' if 'empty' in str(e) else ''
    except Exception: return ''
    return 'empty' if y.shape == u.shape else ''


# ---- the cases: (id, call, expected) with expected = str (a message the call must raise) or a checker -------------

def _silent_wrong_answers(tmp):
    "The campaign's silent wrong answers that are ours to fix (the data readers' and per-case spacing are elsewhere)."
    from medseg_lab.metrics import dice
    from medseg_lab.train import evaluate
    from medseg_lab.data import phantom
    vol = (torch.rand(2, 12, 16, 16) > 0.7).long()
    return [
        ("TrainConfig(patch_size='32')", lambda: _cfg(patch_size='32'),
         "patch_size must be a list of integers or None, got the string '32'"),
        ("TrainConfig(patch_size=[31.7, 32])", lambda: _cfg(patch_size=[31.7, 32]),
         "patch_size[0] must be an integer, got 31.7 (float)"),
        ("TrainConfig(augment='False')", lambda: _cfg(augment='False'),
         "any non-empty string is truthy; write augment=False without quotes"),
        ("TrainConfig(deep_supervision='no')", lambda: _cfg(deep_supervision='no'),
         "write deep_supervision=False without quotes"),
        ("TrainConfig(amp='no')", lambda: _cfg(amp='no'), "write amp=False without quotes"),
        ("TrainConfig(seed='0')", lambda: _cfg(seed='0'), "seed must be an integer, got the string '0'"),
        ("TrainConfig(warmup='5')", lambda: _cfg(warmup='5'), "write warmup=5 without quotes"),
        ("TrainConfig(out_dir=5)", lambda: _cfg(out_dir=5), "out_dir must be a string, got 5 (int)"),
        ("TrainConfig(eval_metrics='dice')", lambda: _cfg(eval_metrics='dice'),
         "eval_metrics must be a list of strings, got the string 'dice': a string is not a list"),
        ("TrainConfig(epochs=True)", lambda: _cfg(epochs=True), "epochs must be an integer, got True (bool)"),
        ("TrainConfig(momentum=5)", lambda: _cfg(momentum=5), "momentum must lie in [0, 1)"),
        ("TrainConfig(weight_decay=-1)", lambda: _cfg(weight_decay=-1), "weight_decay must be >= 0, got -1.0"),
        ("TrainConfig(lr=float('inf'))", lambda: _cfg(lr=float('inf')), "lr must be a finite number"),
        ("TrainConfig(batch_size=2.5)", lambda: _cfg(batch_size=2.5), "batch_size must be an integer, got 2.5"),
        ("TrainConfig(preset='smal')", lambda: _cfg(preset='smal'), "Unknown preset 'smal' for model 'unet'"),
        ("TrainConfig(device='gpu')", lambda: _cfg(device='gpu'), "device must be 'cpu', 'cuda'"),
        ("train(dict with a string boolean): no run folder", lambda: _train_dict_leaves_nothing(tmp),
         "augment must be True or False"),
        ("train(cfg edited after creation)", lambda: _train_edited(tmp), "write batch_size=4 without quotes"),
        ("dice(binary 3D label map) without num_classes", lambda: dice(vol, vol),
         "ambiguous without num_classes: it reads as one-hot (B, C=12, H, W) or as a binary 3D label map"),
        ("dice(binary 3D label map, num_classes=2)", lambda: dice(vol, vol, num_classes=2),
         lambda d: d.shape == (2, 1) and torch.equal(d, torch.ones(2, 1))),
        ("evaluate(2-channel model, 3-class data)",
         lambda: evaluate(_model('unet', out=2), phantom(2, 32, num_classes=3, n=4)),
         "the model returns 2 logit channel(s) but the data has 3 classes"),
        ("evaluate(model with NaN logits)",
         lambda: evaluate(_NaNModel(), phantom(2, 32, num_classes=3, n=4)), "NaN/Inf logits on cases 0..3"),
        ("train with SGD at lr=30 (the loss explodes)", lambda: _sgd_explodes(tmp), _warned_or_stopped),
        ("train with a loss that turns NaN in epoch 2", lambda: _nan_in_epoch_2(tmp), _stopped_and_kept),
    ]


def _crashes_without_a_message(tmp):
    "The campaign's unhelpful crashes that are ours (the scan's own empty inputs and MONAI's window are elsewhere)."
    from medseg_lab.losses import CeDiceLoss, DiceLoss, BceDiceLoss
    from medseg_lab.train import evaluate, load_run, train
    from medseg_lab.ode import solve_continuous
    from medseg_lab.core import SegDataset
    empty2d, empty3d = torch.randn(0, 1, 32, 32), torch.randn(0, 1, 16, 16, 16)
    cases = []
    for name in ('unet', 'fuseunet', 'cnmunet', 'lgmsnet'):                      # no selective scan inside
        for sd, x in ((2, empty2d), (3, empty3d)):
            for mode in ('eval', 'train'):
                cases.append((f"{name} {sd}D {mode}: empty batch", lambda n=name, s=sd, x=x, m=mode: _run(n, s, x, m),
                              lambda y, s=sd: tuple(y.shape) == (0, 3) + (((32, 32),) if s == 2 else ((16, 16, 16),))[0]))
    cases += [
        ("CeDiceLoss on an empty batch", lambda: CeDiceLoss()(torch.randn(0, 3, 8, 8), torch.zeros(0, 8, 8).long()),
         "a loss over an empty batch is undefined"),
        ("DiceLoss on an empty batch", lambda: DiceLoss()(torch.randn(0, 3, 8, 8), torch.zeros(0, 8, 8).long()),
         "a loss over an empty batch is undefined"),
        ("BceDiceLoss on an empty batch", lambda: BceDiceLoss()(torch.randn(0, 1, 8, 8), torch.zeros(0, 8, 8).long()),
         "a loss over an empty batch is undefined"),
        ("evaluate on an empty data set",
         lambda: evaluate(_model('unet'), SegDataset(torch.zeros(0, 1, 32, 32), torch.zeros(0, 32, 32).long(), 3,
                                                     name='nothing')), "nothing has no cases: nothing to evaluate"),
        ("fuseunet tiny eval on 8x8 (its divisor)", lambda: _run('fuseunet', 2, torch.randn(1, 1, 8, 8), 'eval'),
         "leaves a single voxel at the bottleneck (1/8 resolution)"),
        ("fuseunet tiny eval on 8^3", lambda: _run('fuseunet', 3, torch.randn(1, 1, 8, 8, 8), 'eval'),
         "leaves a single voxel at the bottleneck (1/8 resolution)"),
        ("unet tiny 3D, batch 1 in training on 16^3 (BatchNorm at 1 voxel)",
         lambda: _run('unet', 3, torch.randn(1, 1, 16, 16, 16), 'train'),
         "BatchNorm3d in training needs more than one value per channel"),
        ("cnmunet tiny 2D, batch 1 in training on 16x16", lambda: _run('cnmunet', 2, torch.randn(1, 1, 16, 16), 'train'),
         "Train on batches of 2 or more"),
        ("solve_continuous with NaN dynamics (dopri5)",
         lambda: solve_continuous(lambda t, y: y * float('nan'), torch.ones(3), [0., 1.], adjoint=False),
         "the dynamics func(t, y) returned NaN/Inf from a finite state at t=0"),
        ("solve_continuous with NaN dynamics (rk4)",
         lambda: solve_continuous(lambda t, y: y * float('nan'), torch.ones(3), [0., 1.], method='rk4', adjoint=False),
         "the dynamics func(t, y) returned NaN/Inf"),
        ("solve_continuous on an empty state", lambda: solve_continuous(lambda t, y: -y, torch.ones(0, 4), [0., 1.]),
         lambda r: r[0].shape == (2, 0, 4) and r[1] == 0),
    ]
    from medseg_lab.models import MODELS
    for name in MODELS:
        for dt in (torch.float64, torch.float16, torch.bfloat16):
            cases.append((f"{name} on a {dt} input (CPU)",
                          lambda n=name, d=dt: _run(n, 2, torch.randn(1, 1, 32, 32, dtype=d), 'eval'),
                          f"Input dtype {dt} does not match the model's torch.float32 parameters"))
    run = _finished_run(tmp)
    cases += [
        ("load_run: zero-byte checkpoint.pt", lambda: _damaged(run, 'checkpoint.pt', b'', 'last'),
         "checkpoint.pt cannot be read: it is empty (0 bytes)"),
        ("load_run: truncated checkpoint.pt", lambda: _damaged(run, 'checkpoint.pt', 'half', 'last'),
         "checkpoint.pt cannot be read: it is truncated or corrupt"),
        ("load_run: random bytes in best.pt", lambda: _damaged(run, 'best.pt', 'noise', 'best'),
         "best.pt cannot be read: it is not a torch checkpoint"),
        ("train(resume=): truncated checkpoint.pt", lambda: _damaged(run, 'checkpoint.pt', 'half', 'resume'),
         "The run cannot be resumed from it. best.pt may still load"),
        ("load_run: truncated config.json (recovered from the checkpoint)",
         lambda: _damaged(run, 'config.json', 'half', 'last'), _config_recovered),
        ("train(resume=): truncated config.json, empty checkpoints",
         lambda: _damaged(run, 'config.json', 'half', 'all'),
         "holds a copy of the config: the run cannot be rebuilt from this folder"),
    ]
    scan = _scan_takes_empty_batches()
    for name, sd, kw in (('vmunet', 2, {}), ('dsvmunet', 2, {}), ('mmunet', 2, {}), ('mmunet', 3, {}),
                         ('fuseunet', 2, {'preset': 'tiny-ultralight'})):
        x = empty2d if sd == 2 else empty3d
        label = f"{name}{'-' + kw['preset'] if kw else ''} {sd}D: empty batch (selective scan inside)"
        if scan: cases.append((label, lambda n=name, s=sd, x=x, k=kw: _run(n, s, x, 'eval', **k),
                               "the selective scan got an empty batch" if scan == 'error'
                               else (lambda y: y.shape[0] == 0)))
        else: cases.append((label, None, 'skip: the selective scan itself does not take empty batches yet'))
    return cases


# ---- helpers the cases use -----------------------------------------------------------------------------------------

class _NaNModel(nn.Module):
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.zeros(()))
    def forward(self, x): return torch.full((x.shape[0], 3, *x.shape[2:]), float('nan'))


def _run(name, sd, x, mode, **kw):
    m = _model(name, sd, **kw)
    getattr(m, mode)()
    with torch.set_grad_enabled(mode == 'train'): return m(x)


def _train_dict_leaves_nothing(tmp):
    from medseg_lab.train import train
    out = Path(tmp) / 'never'
    try: train({**_tiny_run(out).to_dict(), 'augment': 'False'})
    finally: assert not out.exists(), "a run folder was created for an invalid config"


def _train_edited(tmp):
    from medseg_lab.train import train
    cfg = _tiny_run(Path(tmp) / 'edited'); cfg.batch_size = '4'
    try: train(cfg)
    finally: assert not (Path(tmp) / 'edited').exists()


def _sgd_explodes(tmp):
    "SGD at lr=30 without clipping: the loss climbs by orders of magnitude (it may or may not reach NaN)."
    from medseg_lab.train import train
    cfg = _tiny_run(Path(tmp) / 'explode', optimizer='sgd', lr=30.0, momentum=0.9, grad_clip=None, epochs=3,
                    iters_per_epoch=6, augment=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try: res = train(cfg)
        except FloatingPointError as e: return 'stopped', str(e), [str(x.message) for x in w]
    return 'finished', res, [str(x.message) for x in w]


def _warned_or_stopped(out):
    kind, res, msgs = out
    if kind == 'stopped': return 'non-finite training loss' in res and 'lower the learning rate' in res
    return any('the training loss exploded' in m for m in msgs) and any('exploded' in n for n in res.metrics['notes'])


def _nan_in_epoch_2(tmp):
    "The real loss, NaN from the 2nd iteration of epoch 2 on (a deterministic divergence)."
    import medseg_lab.train.loop as loop
    from medseg_lab.train import train
    real, made = loop.make_loss, []
    class Sabotaged(nn.Module):
        def __init__(self, loss): super().__init__(); self.loss, self.calls = loss, 0
        def forward(self, out, y):
            self.calls += 1
            return self.loss(out, y) * (float('nan') if self.calls >= 4 else 1.0)
    def make(*a, **k):
        made.append(1)
        return Sabotaged(real(*a, **k)) if len(made) == 1 else real(*a, **k)
    loop.make_loss = make
    cfg = _tiny_run(Path(tmp) / 'nan')
    try:
        try: train(cfg)
        except FloatingPointError as e: err = str(e)
        else: raise AssertionError("a NaN loss did not stop the run")
    finally: loop.make_loss = real
    (folder,) = (Path(tmp) / 'nan').iterdir()
    return err, folder


def _stopped_and_kept(out):
    from medseg_lab.train import run_status
    err, folder = out
    ck = torch.load(folder / 'checkpoint.pt', weights_only=True)
    st = run_status(folder)
    return ('at epoch 2, iteration 2: training stopped, and the last good state (epoch 1) stays in' in err
            and ck['epoch'] == 1 and st['state'] == 'failed' and st['error'].startswith('FloatingPointError'))


_RUN = {}
def _finished_run(tmp):
    from medseg_lab.train import train
    if 'run' not in _RUN: _RUN['run'] = train(_tiny_run(Path(tmp) / 'ok')).run_dir
    return _RUN['run']


def _damaged(run, name, how, action):
    "A copy of the finished run with `name` damaged (b'' / 'half' / 'noise'), then `action` on it."
    import shutil
    from medseg_lab.train import load_run, train
    copy = Path(str(run) + f'-{name}-{action}')
    if copy.exists(): shutil.rmtree(copy)
    shutil.copytree(run, copy)
    raw = (copy / name).read_bytes()
    data = how if isinstance(how, bytes) else raw[:len(raw) // 2] if how == 'half' else bytes(range(256)) * 8
    (copy / name).write_bytes(data)
    if action == 'all':                                   # the config's copies in the checkpoints are gone too
        for ck in ('checkpoint.pt', 'best.pt'): (copy / ck).write_bytes(b'')
    if action in ('resume', 'all'): return train(resume=copy)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = load_run(copy, action)
    return res, [str(x.message) for x in w]


def _config_recovered(out):
    res, msgs = out
    return res.config.name == 'bad' and any('config.json is not valid JSON' in m and 'using the copy' in m for m in msgs)


# ---- the campaign --------------------------------------------------------------------------------------------------

def campaign(tmp):
    "Run every case; returns rows (group, case, outcome, message) with outcome 'ok', 'skip' or a failure reason."
    rows = []
    for group, cases in (('silent wrong answer', _silent_wrong_answers(tmp)),
                         ('crash without a message', _crashes_without_a_message(tmp))):
        for case, call, expected in cases:
            if call is None: rows.append((group, case, 'skip', expected)); continue
            try: result = call()
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                if isinstance(expected, str) and expected in str(e):
                    bad = 'weights_only=False' in msg or (e.__cause__ is not None and 'weights_only' in str(e.__cause__))
                    rows.append((group, case, 'suggests unsafe loading' if bad else 'ok', msg))
                else: rows.append((group, case, 'wrong or unclear error', msg))
                continue
            if callable(expected) and expected(result): rows.append((group, case, 'ok', 'right answer'))
            else: rows.append((group, case, 'silent (no error, answer not checked right)', repr(result)[:200]))
    return rows


@pytest.fixture(scope='module')
def rows(tmp_path_factory):
    torch.manual_seed(0)
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try: yield campaign(tmp_path_factory.mktemp('bad_input'))
    finally: torch.set_num_threads(threads)


def test_no_silent_wrong_answers_and_no_crashes_without_a_message(rows):
    failed = [r for r in rows if r[2] not in ('ok', 'skip')]
    assert not failed, '\n'.join(f"[{g}] {c}: {o}: {m}" for g, c, o, m in failed)
    assert len(rows) >= 80 and sum(r[2] == 'ok' for r in rows) >= 75, len(rows)   # the table is all there


def test_every_message_says_what_to_do_and_never_suggests_unsafe_loading(rows):
    for group, case, outcome, msg in rows:
        if outcome == 'ok' and msg != 'right answer':
            assert 'weights_only=False' not in msg, case
            assert len(msg) > 40, (case, msg)              # a sentence, not a bare torch error


if __name__ == '__main__':   # print the table: case, outcome, the message it now gives
    import tempfile
    torch.set_num_threads(1)
    for group, case, outcome, msg in campaign(Path(tempfile.mkdtemp())):
        print(f"- [{outcome}] ({group}) {case}\n    {msg}")
