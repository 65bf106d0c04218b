"""run_sweep: parallel papermill runs that never overwrite earlier outputs and continue past a failing run."""
import hashlib
from pathlib import Path
import nbformat, pandas as pd, pytest
from medseg_lab.sweep import run_sweep, expand_grid

pytest.importorskip("papermill")


def _notebook(folder: Path) -> Path:
    "A throwaway experiment: writes result.txt into out_dir; fails for x == 2."
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1\nout_dir = '.'", metadata={'tags': ['parameters']}),
               nbformat.v4.new_code_cell("import pathlib\nif x == 2: raise RuntimeError(f'bad x={x}')\n"
                                         "pathlib.Path(out_dir, 'result.txt').write_text(str(x * x))")],
        metadata={'kernelspec': {'name': 'medseg_lab', 'display_name': 'medseg_lab', 'language': 'python'}})
    path = folder / 'exp.ipynb'; nbformat.write(nb, path); return path


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_failing_run_is_kept_and_reported_and_nothing_is_overwritten(tmp_path):
    nb = _notebook(tmp_path)
    s1 = run_sweep(nb, {'x': [2, 3]}, out_dir=tmp_path / 'out', workers=1)   # one at a time: the failure comes first
    assert list(s1.status) == ['failed', 'ok']                     # the sweep went on past the failing run
    assert 'RuntimeError: bad x=2' in s1.error[0] and pd.isna(s1.error[1])
    failed = Path(s1.notebook[0]); assert failed.exists() and 'bad x=2' in failed.read_text()   # executed notebook with the traceback
    assert [Path(d, 'result.txt').read_text() if Path(d, 'result.txt').exists() else None for d in s1.run_dir] == [None, '9']
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
    assert not (tmp_path / 'out').exists()
    assert expand_grid({'a': [1, 2], 'b': 'z'}) == [{'a': 1, 'b': 'z'}, {'a': 2, 'b': 'z'}]
