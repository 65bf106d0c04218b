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
