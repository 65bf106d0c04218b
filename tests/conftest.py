"""Shared pytest fixtures for medseg_lab."""
import importlib.util, os, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"

def load_script(relpath: str, name: str):
    "The repository's script at `relpath` (e.g. 'benchmarks/memory.py') imported as module `name`."
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod                          # dataclasses in the script look their module up
    spec.loader.exec_module(mod)
    return mod

@pytest.fixture(scope="session")
def repo() -> Path:
    "The repository root."
    return REPO

@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Keep the data cache of the tests apart from the user's, but shared across tests of one session."
    cache = tmp_path_factory.getbasetemp() / "medseg_cache"
    monkeypatch.setenv("MEDSEG_LAB_CACHE", os.environ.get("MEDSEG_LAB_TEST_CACHE", str(cache)))

@pytest.fixture
def run_experiment(repo, tmp_path):
    """Run `nbs/experiments/<name>.ipynb` through papermill with `out_dir=tmp_path/runs` and the given parameters;
    returns (executed notebook path, sorted run folders it created)."""
    papermill = pytest.importorskip("papermill")
    def run(name: str, **params):
        out_nb = tmp_path / f"{name}.executed.ipynb"
        papermill.execute_notebook(str(repo / f"nbs/experiments/{name}.ipynb"), str(out_nb),
                                   parameters=dict(out_dir=str(tmp_path / "runs"), **params),
                                   kernel_name="medseg_lab", cwd=str(repo / "nbs/experiments"), progress_bar=False)
        return out_nb, sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    return run
