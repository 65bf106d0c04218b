"""`train()` runs unchanged under torchrun: two CPU processes (gloo) end with identical weights and one run folder."""
import json, os, socket, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch

SCRIPT = textwrap.dedent('''
    import os, sys, torch
    from medseg_lab.train import TrainConfig, train
    out = sys.argv[1]
    cfg = TrainConfig(model='unet', preset='tiny', data='phantom', data_kwargs=dict(size=32, n=16), epochs=2, batch_size=2,
                      iters_per_epoch=3, lr=3e-3, optimizer='sgd', out_dir=os.path.join(out, 'runs'), name='ddp',
                      progress=False, eval_metrics=['dice'], num_threads=1, device='cpu')
    res = train(cfg)
    rank = int(os.environ['RANK'])
    torch.save({k: v.clone() for k, v in res.model.state_dict().items()}, os.path.join(out, f'rank{rank}.pt'))
    last = torch.load(os.path.join(str(res.run_dir), 'checkpoint.pt'), weights_only=True)['model']
    torch.save(last, os.path.join(out, f'last{rank}.pt'))
    print('RANK', rank, 'RUN', res.run_dir, 'WORLD', res.metrics['world_size'], flush=True)
''')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _torchrun(tmp_path, nproc):
    script = tmp_path / 'ddp_train.py'; script.write_text(SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MASTER_ADDR': '127.0.0.1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc), '--master_addr', '127.0.0.1',
           '--master_port', str(_free_port()), str(script), str(tmp_path)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


@pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not available')
def test_two_cpu_processes_identical_weights_one_run_folder(tmp_path):
    out = _torchrun(tmp_path, 2)
    assert out.count('WORLD 2') == 2, out
    w0, w1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0: assert torch.equal(w0[k], w1[k]), f'rank 0 and rank 1 differ in {k}'
    runs = [p for p in (tmp_path / 'runs').iterdir()]
    assert len(runs) == 1, runs                       # only rank 0 writes the run folder
    run = runs[0]
    for f in ('config.json', 'history.csv', 'checkpoint.pt', 'best.pt', 'metrics.json'): assert (run / f).exists(), f
    m = json.loads((run / 'metrics.json').read_text())
    assert m['world_size'] == 2 and m['epochs_completed'] == 2
    # the training actually moved the weights, identically on both ranks
    l0, l1 = (torch.load(tmp_path / f'last{r}.pt', weights_only=True) for r in (0, 1))
    assert all(torch.equal(l0[k], l1[k]) for k in l0)
    import pandas as pd
    h = pd.read_csv(run / 'history.csv')
    assert list(h.iters) == [3, 3] and h.train_loss.notna().all()
