"""Run-folder guarantees of medseg_lab.train: no overwrites, atomic checkpoints, load_run round trips."""
import hashlib
import pytest, torch
import pandas as pd
from medseg_lab.train import TrainConfig, train, load_run


def _cfg(tmp_path, **kw):
    base = dict(model='unet', preset='tiny', data='phantom', data_kwargs=dict(size=32), epochs=1, batch_size=4,
                iters_per_epoch=2, out_dir=str(tmp_path), name='same', progress=False, eval_metrics=['dice'],
                num_threads=1)
    return TrainConfig(**{**base, **kw})


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _leftovers(folder):
    "Temporary files an interrupted atomic write could leave behind."
    return [p.name for p in folder.iterdir() if p.name.startswith('.') or p.name.endswith('.tmp')]


def test_runs_with_the_same_name_never_overwrite(tmp_path):
    a = train(_cfg(tmp_path))
    before = _digest(a.run_dir)
    b = train(_cfg(tmp_path))
    assert a.run_dir != b.run_dir and a.run_dir.parent == b.run_dir.parent
    assert a.run_dir.name.startswith('same-') and b.run_dir.name.startswith('same-')
    assert _digest(a.run_dir) == before          # the first run is untouched, byte for byte
    for r in (a, b): assert (r.run_dir / 'metrics.json').exists() and (r.run_dir / 'checkpoint.pt').exists()


def test_failed_checkpoint_save_leaves_no_partial_file(tmp_path, monkeypatch):
    # one finished epoch of a two-epoch run: a good checkpoint.pt exists
    run = train(_cfg(tmp_path, epochs=2), callback=lambda epoch, row: True)
    good = (run.run_dir / 'checkpoint.pt').read_bytes()

    def broken_save(obj, f, *args, **kwargs):   # writes half a file, then the disk "fills up"
        f.write(b'partial checkpoint bytes'); raise OSError('disk full (simulated)')
    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'): train(_cfg(tmp_path, epochs=2), resume=run.run_dir)
    fresh = tmp_path / 'fresh'
    with pytest.raises(OSError, match='disk full'): train(_cfg(fresh, epochs=2))
    monkeypatch.undo()

    assert (run.run_dir / 'checkpoint.pt').read_bytes() == good      # the old checkpoint survives intact
    assert _leftovers(run.run_dir) == []
    torch.load(run.run_dir / 'checkpoint.pt', weights_only=True)     # and still loads
    (new_dir,) = fresh.iterdir()
    assert not (new_dir / 'checkpoint.pt').exists() and not (new_dir / 'best.pt').exists()
    assert _leftovers(new_dir) == []


@pytest.mark.parametrize('which', ['best', 'last'])
def test_load_run_round_trip_gives_identical_outputs(tmp_path, which):
    res = train(_cfg(tmp_path, epochs=2))
    loaded = load_run(res.run_dir, which=which)
    x = torch.randn(3, 1, 40, 24)
    if which == 'best': ref = res.model.eval()
    else:
        ref = load_run(res.run_dir, 'last').model   # a second, independent rebuild
        ck = torch.load(res.run_dir / 'checkpoint.pt', weights_only=True)
        assert all(torch.equal(v, ck['model'][k]) for k, v in loaded.model.state_dict().items())
    with torch.no_grad(): assert torch.equal(loaded.model(x), ref(x))
    pd.testing.assert_frame_equal(loaded.history, res.history, check_dtype=False)
    assert loaded.metrics == res.metrics and loaded.config == res.config
    assert not loaded.model.training


def test_load_run_names_missing_files(tmp_path):
    res = train(_cfg(tmp_path))
    (res.run_dir / 'best.pt').unlink()
    with pytest.raises(FileNotFoundError, match='best.pt'): load_run(res.run_dir)
    load_run(res.run_dir, which='last')   # checkpoint.pt is still there


def test_channel_mismatch_fails_before_any_run_folder(tmp_path):
    with pytest.raises(ValueError, match='channel'): train(_cfg(tmp_path, model_kwargs={'in_channels': 3}))
    assert not any(tmp_path.iterdir())        # nothing written: the check runs before training starts


def test_dsvmunet_distillation_through_train(tmp_path):
    "L = CeDice + α·L_proj + β·L_prog: both terms logged and non-zero, the total falls; the ablation switch reaches the model."
    res = train(_cfg(tmp_path, model='dsvmunet', epochs=4, iters_per_epoch=2, lr=3e-3, distill='both'))
    h = res.history
    assert (h.train_proj > 0).all() and (h.train_prog > 0).all()
    assert h.train_loss.iloc[-1] < h.train_loss.iloc[0]
    assert (h.train_loss > h.train_proj + 0.5 * h.train_prog).all()           # the segmentation term is in there too
    only_proj = train(_cfg(tmp_path, model='dsvmunet', distill='proj', distill_alpha=2.0))
    assert 'train_proj' in only_proj.history and 'train_prog' not in only_proj.history
    assert only_proj.model.config['distill'] == 'proj'
    plain = train(_cfg(tmp_path, model='dsvmunet', distill='none'))
    assert 'train_proj' not in plain.history


def test_distill_on_a_model_without_features_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="has none"): train(_cfg(tmp_path, model='unet', distill='both'))
    assert not any(tmp_path.iterdir())


def test_init_checkpoint_loads_local_weights_or_names_the_keys(tmp_path):
    first = train(_cfg(tmp_path / 'a'))
    ck = torch.load(first.run_dir / 'best.pt', weights_only=True)['model']
    # start a zero-step-budget run from those weights: the weights it evaluates are exactly the loaded ones
    second = train(_cfg(tmp_path / 'b', init_checkpoint=str(first.run_dir / 'best.pt'), lr=1e-12, optimizer='sgd', momentum=0.0, nesterov=False, augment=False))
    assert any('initialised from' in n for n in second.metrics['notes'])
    w = second.model.state_dict()
    assert all(torch.allclose(w[k].float(), ck[k].float(), atol=1e-6) for k in ck if w[k].is_floating_point() and 'running' not in k)
    with pytest.raises(FileNotFoundError, match='does not exist'): train(_cfg(tmp_path / 'c', init_checkpoint=str(tmp_path / 'nope.pt')))
    torch.save({'model': {'encoder.0.weight': torch.zeros(3)}}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='encoder.0.weight'): train(_cfg(tmp_path / 'c', init_checkpoint=str(tmp_path / 'other.pt')))
    assert not (tmp_path / 'c').exists()                                      # checked before any run folder is made


def test_unknown_training_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match='mmunet-paper'): TrainConfig.from_preset('nnunet-3d')


# ---- run folders under faults: kill -9 at every write, concurrent resumes, permissions, failed runs ----
import json, os, signal, stat, subprocess, sys, time
from medseg_lab.train import run_status

_KILL_AT_WRITE = r'''
import json, os, signal, sys
n = int(sys.argv[1])
real_replace, count = os.replace, [0]
def replace(src, dst):
    if count[0] == n:   # the temporary file is complete, the rename has not happened: die without any clean-up
        os.kill(os.getpid(), signal.SIGKILL)
    count[0] += 1
    return real_replace(src, dst)
os.replace = replace
from medseg_lab.train import TrainConfig, train
train(TrainConfig.from_dict(json.loads(sys.argv[2])))
'''


def _fault_cfg(tmp_path, **kw):
    return _cfg(tmp_path, **{'epochs': 2, 'iters_per_epoch': 2, 'name': 'fault', 'eval_metrics': ['dice', 'hd95'], **kw})


def _without_time(history):
    return history.drop(columns=['time']).reset_index(drop=True)


def _same_run(res, ref):
    "History (all but wall time), weights of both checkpoints, best epoch and test metrics identical."
    pd.testing.assert_frame_equal(_without_time(res.history), _without_time(ref.history))
    pd.testing.assert_frame_equal(_without_time(pd.read_csv(res.run_dir / 'history.csv')),
                                  _without_time(pd.read_csv(ref.run_dir / 'history.csv')))
    for name in ('checkpoint.pt', 'best.pt'):
        a, b = (torch.load(r.run_dir / name, weights_only=True) for r in (res, ref))
        assert a['epoch'] == b['epoch'] and a['best_epoch'] == b['best_epoch'], name
        assert a['model'].keys() == b['model'].keys() and all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    for k in ('test', 'best_epoch', 'best_val_dice_mean', 'epochs_completed', 'stopped', 'params'):
        assert res.metrics[k] == ref.metrics[k], k


def test_kill_at_every_write_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """SIGKILL just before each rename of a run (status, config, each epoch's checkpoint/best/history/status,
    metrics), i.e. at every boundary between two writes with the next one's temporary file left behind; then
    `train(resume=folder)` ends with the same history, weights and metrics as a run that was never interrupted."""
    real_replace, writes = os.replace, []
    def counting(src, dst): writes.append(os.path.basename(dst)); return real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', counting)
    ref = train(_fault_cfg(tmp_path / 'ref'))
    monkeypatch.undo()
    assert writes[:2] == ['status.json', 'config.json'] and writes[-2:] == ['metrics.json', 'status.json']
    assert {'checkpoint.pt', 'best.pt', 'history.csv'} <= set(writes)
    for n, target in enumerate(writes):
        cfg = _fault_cfg(tmp_path / f'kill{n}')
        child = subprocess.run([sys.executable, '-c', _KILL_AT_WRITE, str(n), json.dumps(cfg.to_dict())],
                               capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert child.returncode == -signal.SIGKILL, (n, target, child.stderr[-2000:])
        (folder,) = (tmp_path / f'kill{n}').iterdir()
        assert any(p.name.startswith(f'.{target}.') and p.name.endswith('.tmp') for p in folder.iterdir()), n
        assert run_status(folder)['state'] == 'interrupted', n          # its process died while 'running'
        res = train(cfg, resume=folder)
        _same_run(res, ref)
        assert not [p.name for p in folder.iterdir() if p.name.endswith('.tmp')], n   # leftovers cleaned
        assert run_status(folder)['state'] == 'finished'


def test_two_resumes_of_one_folder_cannot_both_run(tmp_path):
    "A second train(resume=...) while one is running fails at once and names the holder; the holder is unaffected."
    cfg = _fault_cfg(tmp_path, epochs=3)
    first = train(cfg, callback=lambda epoch, row: True)            # one epoch, then stop
    code = ("import json, sys, time; from medseg_lab.train import TrainConfig, train\n"
            "train(TrainConfig.from_dict(json.loads(sys.argv[1])), resume=sys.argv[2],"
            " callback=lambda e, r: time.sleep(60))")
    child = subprocess.Popen([sys.executable, '-c', code, json.dumps(cfg.to_dict()), str(first.run_dir)],
                             env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        for _ in range(600):                                          # until the child holds the folder
            st = run_status(first.run_dir)
            if st['state'] == 'running' and st.get('pid') == child.pid: break
            time.sleep(0.1)
        else: raise AssertionError(f"the child never started: {st}")
        with pytest.raises(RuntimeError, match=rf"is in use by another train\(\) \(pid {child.pid} on"):
            train(cfg, resume=first.run_dir)
    finally:
        child.kill(); child.wait()
    assert run_status(first.run_dir)['state'] == 'interrupted'      # killed inside its session
    done = train(cfg, resume=first.run_dir)                          # the lock died with it
    assert list(done.history.epoch) == [1, 2, 3] and run_status(first.run_dir)['state'] == 'finished'


def test_run_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try: res = train(_cfg(tmp_path))
    finally: os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in res.run_dir.iterdir()}
    assert set(modes.values()) == {0o640}, modes                    # group-readable, as open() would make them


def test_a_failed_train_marks_its_folder_failed(tmp_path):
    def broken_callback(epoch, row): raise KeyError('plotting failed')
    with pytest.raises(KeyError, match='plotting failed'): train(_cfg(tmp_path), callback=broken_callback)
    (folder,) = tmp_path.iterdir()
    st = run_status(folder)
    assert st['state'] == 'failed' and st['error'] == "KeyError: 'plotting failed'" and st['epoch'] == 1
    assert not (folder / 'metrics.json').exists()


def test_resume_refuses_to_start_over_on_top_of_results(tmp_path):
    res = train(_cfg(tmp_path, epochs=2), callback=lambda e, r: True)
    (res.run_dir / 'checkpoint.pt').unlink()
    with pytest.raises(FileNotFoundError, match='checkpoint.pt is missing but best.pt, history.csv, metrics.json exist, and starting over would replace them'):
        train(_cfg(tmp_path, epochs=2), resume=res.run_dir)
    (res.run_dir / 'best.pt').write_bytes(b'')
    torch.save({'not': 'a checkpoint'}, res.run_dir / 'checkpoint.pt')
    (res.run_dir / 'checkpoint.pt').write_bytes((res.run_dir / 'checkpoint.pt').read_bytes()[:20])
    with pytest.raises(ValueError, match=r"checkpoint.pt cannot be read: it is truncated or corrupt .*best.pt may still load"):
        train(_cfg(tmp_path, epochs=2), resume=res.run_dir)
