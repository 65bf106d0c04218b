"""The command line from a shell: --help of every subcommand, and plan -> train -> predict -> evaluate on a 2D folder."""
import json, os, subprocess, sys, time
from dataclasses import fields
from pathlib import Path
import numpy as np
import pytest

from medseg_lab.train import TrainConfig


def _run(args, cwd, env, ok=True):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "medseg_lab", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=900)
    print(f"$ python -m medseg_lab {' '.join(map(str, args))}  [{time.perf_counter() - t:.1f} s]\n{r.stdout}{r.stderr}")
    assert (r.returncode == 0) == ok, (r.returncode, r.stdout, r.stderr)
    return r


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, OMP_NUM_THREADS="1", MEDSEG_LAB_CACHE=str(tmp_path / "cache"))


def test_help_of_every_subcommand_is_complete(tmp_path, env):
    top = _run(["--help"], tmp_path, env).stdout
    assert "{plan,train,predict,evaluate}" in top
    train_help = _run(["train", "--help"], tmp_path, env).stdout
    missing = [f.name for f in fields(TrainConfig) if "--" + f.name.replace("_", "-") not in train_help]
    assert not missing, f"TrainConfig fields without a train option: {missing}"
    for opt in ("--memory-budget-gb", "--plan", "--loader-workers", "--no-augment"):
        assert opt in train_help
    for cmd, opts in (("plan", ["--data-root", "--output"]), ("predict", ["--no-mirror", "--save-probabilities", "--overwrite"]),
                      ("evaluate", ["--num-classes", "--metrics"])):
        h = _run([cmd, "--help"], tmp_path, env).stdout
        assert h.startswith(f"usage: medseg_lab {cmd}") and all(o in h for o in opts), h


def test_console_script_is_installed(tmp_path, env):
    "setup.py's entry point: `medseg_lab` beside this Python (reinstall with `pip install -e .` if it is missing)."
    exe = Path(sys.executable).with_name("medseg_lab")
    assert exe.is_file(), f"{exe} missing: the console script comes from setup.py entry_points (pip install -e .)"
    r = subprocess.run([str(exe), "evaluate", "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "usage: medseg_lab evaluate" in r.stdout


def test_shell_path_on_a_2d_folder(tmp_path, env):
    from medseg_lab.data import write_sample_folder
    from PIL import Image
    data = write_sample_folder(tmp_path / "lesions", "folder2d", n_cases=4, n_test=2, seed=3)
    _run(["plan", data, "-o", tmp_path / "plan.json", "--resize-to", "64", "--preprocess-workers", "0"], tmp_path, env)
    assert json.loads((tmp_path / "plan.json").read_text())["mode_2d"] == "resize"
    r = _run(["train", "--data", data, "--preset", "tiny", "--epochs", "1", "--iters-per-epoch", "2", "--plan",
              tmp_path / "plan.json", "--out-dir", tmp_path / "runs", "--no-progress", "--num-threads", "1",
              "--eval-metrics", "dice", "--loader-workers", "0", "--preprocess-workers", "0"], tmp_path, env)
    run = Path(r.stdout.split("run folder: ")[1].split()[0])
    assert (run / "plan.json").is_file() and json.loads((run / "config.json").read_text())["spatial_dims"] == 2
    _run(["predict", run, data / "test" / "images", tmp_path / "pred"], tmp_path, env)
    for p in sorted((data / "test" / "images").iterdir()):
        im = Image.open(p)
        assert np.asarray(Image.open(tmp_path / "pred" / f"{p.stem}.png")).shape == (im.height, im.width)
    r = _run(["evaluate", tmp_path / "pred", data / "test" / "masks"], tmp_path, env)
    assert "label 1: Dice" in r.stdout and (tmp_path / "pred" / "summary.json").is_file()
    r = _run(["predict", run, data / "test" / "images", tmp_path / "pred"], tmp_path, env, ok=False)
    assert r.returncode == 2 and "never overwrites" in r.stderr and "Traceback" not in r.stderr
