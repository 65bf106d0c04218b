"""run_sweep: parallel papermill runs that never overwrite earlier outputs, continue past a failing run, give the same
summary on every engine (local processes, a Dask cluster, submitit) and resume after a SIGKILL."""
import hashlib, json, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat, pandas as pd, pytest
from medseg_lab.sweep import run_sweep, expand_grid

pytest.importorskip("papermill")


def _notebook(folder: Path) -> Path:
    """A throwaway experiment: writes result.txt into out_dir; fails for x == 2; with $SWEEP_TEST_STALL set, the
    run for x == 3 writes its kernel's pid and then waits (a run that is still going when the sweep is killed)."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1\nout_dir = '.'", metadata={'tags': ['parameters']}),
               nbformat.v4.new_code_cell(
                   "import os, pathlib, time\n"
                   "if x == 3 and os.environ.get('SWEEP_TEST_STALL'):\n"
                   "    pathlib.Path(out_dir, 'kernel.pid').write_text(str(os.getpid())); time.sleep(600)\n"
                   "if x == 2: raise RuntimeError(f'bad x={x}')\n"
                   "pathlib.Path(out_dir, 'result.txt').write_text(str(x * x))")],
        metadata={'kernelspec': {'name': 'medseg_lab', 'display_name': 'medseg_lab', 'language': 'python'}})
    path = folder / 'exp.ipynb'; nbformat.write(nb, path); return path


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def _summary(sweep_dir) -> pd.DataFrame:
    "summary.csv as written on disk, without what legitimately differs between two sweeps: durations, the folder's path."
    s = pd.read_csv(Path(sweep_dir) / 'summary.csv', index_col='run').drop(columns='duration_s')
    for c in ('notebook', 'run_dir'): s[c] = [str(Path(p).relative_to(sweep_dir)) for p in s[c]]
    return s


def _results(summary: pd.DataFrame) -> list:
    return [Path(d, 'result.txt').read_text() if Path(d, 'result.txt').exists() else None for d in summary.run_dir]


def test_failing_run_is_kept_and_reported_and_nothing_is_overwritten(tmp_path):
    nb = _notebook(tmp_path)
    s1 = run_sweep(nb, {'x': [2, 3]}, out_dir=tmp_path / 'out', workers=1)   # one at a time: the failure comes first
    assert list(s1.status) == ['failed', 'ok']                     # the sweep went on past the failing run
    assert 'RuntimeError: bad x=2' in s1.error[0] and pd.isna(s1.error[1])
    failed = Path(s1.notebook[0]); assert failed.exists() and 'bad x=2' in failed.read_text()   # executed notebook with the traceback
    assert _results(s1) == [None, '9']
    sweep1 = Path(s1.attrs['sweep_dir'])
    on_disk = pd.read_csv(sweep1 / 'summary.csv', index_col='run')
    assert list(on_disk.status) == ['failed', 'ok']
    before = _digest(sweep1)
    s2 = run_sweep(nb, [{'x': 1}], out_dir=tmp_path / 'out')       # same notebook, same parameters, same out_dir
    assert Path(s2.attrs['sweep_dir']) != sweep1 and list(s2.status) == ['ok']
    assert _digest(sweep1) == before                                # the first sweep is untouched, byte for byte


def test_bad_grid_fails_before_anything_runs(tmp_path):
    nb = _notebook(tmp_path)
    with pytest.raises(ValueError, match="its parameters: x, out_dir"): run_sweep(nb, {'y': [1]}, out_dir=tmp_path / 'out')
    with pytest.raises(FileNotFoundError): run_sweep(tmp_path / 'nope.ipynb', {'x': [1]}, out_dir=tmp_path / 'out')
    with pytest.raises(ValueError, match='workers'): run_sweep(nb, {'x': [1]}, out_dir=tmp_path / 'out', workers=0)
    with pytest.raises(TypeError, match='submit'): run_sweep(nb, {'x': [1]}, out_dir=tmp_path / 'out', executor=object())
    with pytest.raises(FileNotFoundError, match='not a sweep folder'): run_sweep(resume=tmp_path)
    assert not (tmp_path / 'out').exists()
    assert expand_grid({'a': [1, 2], 'b': 'z'}) == [{'a': 1, 'b': 'z'}, {'a': 2, 'b': 'z'}]


GRID = {'x': [1, 2, 3, 4]}


@pytest.fixture(scope='module')
def local_sweep(tmp_path_factory):
    "The reference: the 4-point sweep (x=2 fails) in the local pool of 2 processes, uninterrupted."
    folder = tmp_path_factory.mktemp('local')
    nb = _notebook(folder)
    return nb, run_sweep(nb, GRID, out_dir=folder / 'out', workers=2)


def test_dask_and_submitit_give_the_local_pools_summary(tmp_path, local_sweep):
    "A 4-point sweep with one failing point: local pool, a real Dask LocalCluster (2 worker processes), submitit."
    distributed = pytest.importorskip("distributed")
    submitit = pytest.importorskip("submitit")
    (nb, local), grid = local_sweep, GRID
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
         distributed.Client(cluster) as client:
        on_dask = run_sweep(nb, grid, out_dir=tmp_path / 'dask', executor=client)
        workers = set(client.run(os.getpid).values())
    ex = submitit.LocalExecutor(folder=tmp_path / 'submitit-logs'); ex.update_parameters(timeout_min=10)
    on_submitit = run_sweep(nb, grid, out_dir=tmp_path / 'submitit', executor=ex)
    assert len(workers) == 2 and os.getpid() not in workers
    assert list(local.status) == ['ok', 'failed', 'ok', 'ok'] and 'RuntimeError: bad x=2' in local.error[1]
    expected = _summary(local.attrs['sweep_dir'])
    for s in (on_dask, on_submitit):
        pd.testing.assert_frame_equal(_summary(s.attrs['sweep_dir']), expected)
        assert _results(s) == ['1', None, '9', '16']             # every point wrote into its own folder
        assert 'bad x=2' in Path(s.notebook[1]).read_text()       # the failing point's executed notebook is kept
    assert len(list((tmp_path / 'submitit-logs').glob('*_result.pkl'))) == 4   # the points really ran as submitit jobs


def _alive(pid: int) -> bool:
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    try:   # a zombie (exited, not yet reaped by its new parent) is gone for our purpose
        return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return True


def test_sigkilled_sweep_resumes_to_the_uninterrupted_summary(tmp_path, local_sweep):
    nb, whole = local_sweep
    driver = subprocess.Popen([sys.executable, '-c', "import sys; from medseg_lab.sweep import run_sweep; "
                               "run_sweep(sys.argv[1], {'x': [1, 2, 3, 4]}, out_dir=sys.argv[2], workers=1)",
                               str(nb), str(tmp_path / 'killed')],
                              env={**os.environ, 'SWEEP_TEST_STALL': '1', 'OMP_NUM_THREADS': '1'},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while not list((tmp_path / 'killed').glob('sweep-*/002-*/kernel.pid')):   # point x=3 is running
            assert driver.poll() is None and time.time() < deadline, driver.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)                        # kill -9 of the sweep process, mid-way
        driver.wait(30)
    finally:
        if driver.poll() is None: driver.kill()
    sweep = next((tmp_path / 'killed').glob('sweep-*'))
    kernel = int(next(sweep.glob('002-*/kernel.pid')).read_text())
    deadline = time.time() + 60                                   # the pool worker died with the sweep, its kernel after it
    while _alive(kernel) and time.time() < deadline: time.sleep(0.5)
    if _alive(kernel): os.kill(kernel, signal.SIGKILL); pytest.fail(f"the stalled run's kernel {kernel} outlived the killed sweep")
    before = pd.read_csv(sweep / 'summary.csv', index_col='run')
    assert list(before.status) == ['ok', 'failed', 'pending', 'pending'], before
    kept = Path(before.notebook[0]).read_bytes()
    resumed = run_sweep(resume=sweep, workers=2)
    pd.testing.assert_frame_equal(_summary(sweep), _summary(whole.attrs['sweep_dir']))
    assert _results(resumed) == _results(whole) == ['1', None, '9', '16']
    assert Path(resumed.notebook[0]).read_bytes() == kept         # the finished point was not run again
    for i in (1, 2):                                              # the failed and the interrupted attempt are kept aside
        assert (sweep / f"{Path(resumed.run_dir[i]).name}.attempt1").is_dir()
    assert (sweep / f"{Path(resumed.run_dir[2]).name}.attempt1" / 'kernel.pid').exists()
    again = run_sweep(resume=sweep)                               # a finished sweep: only the failed point reruns
    pd.testing.assert_frame_equal(_summary(sweep), _summary(whole.attrs['sweep_dir']))
    assert (sweep / f"{Path(again.run_dir[1]).name}.attempt2").is_dir()
    assert not (sweep / f"{Path(again.run_dir[2]).name}.attempt2").exists()


def test_resume_refuses_a_running_sweep_and_a_different_grid(tmp_path):
    nb = _notebook(tmp_path)
    s = run_sweep(nb, {'x': [1]}, out_dir=tmp_path / 'out')
    sweep = Path(s.attrs['sweep_dir'])
    with pytest.raises(ValueError, match='grid differs'): run_sweep(nb, {'x': [1, 2]}, resume=sweep)
    with pytest.raises(ValueError, match='this sweep ran'): run_sweep(tmp_path / 'other.ipynb', resume=sweep)
    import fcntl
    with open(sweep / '.lock', 'w') as held:                      # another run_sweep holds the sweep's lock
        fcntl.flock(held, fcntl.LOCK_EX)                          # (flock: a second open file conflicts, even here)
        with pytest.raises(RuntimeError, match='being run by another process'): run_sweep(resume=sweep)
    assert json.loads((sweep / 'grid.json').read_text())['points'] == [{'x': 1}]
