"""The papermill experiments run end to end with a tiny budget and leave their outputs in a run folder."""
import json, sys
import pytest

papermill = pytest.importorskip("papermill")

def test_train_eval_tiny_budget(repo, tmp_path, run_experiment):
    out_nb, runs = run_experiment("train_eval", model="unet", preset="tiny", data="phantom", epochs=2,
                                  time_budget_s=30, batch_size=4, data_kwargs={"size": 32})
    assert out_nb.exists() and len(runs) == 1
    run = runs[0]
    for f in ["config.json", "metrics.json", "history.csv", "checkpoint.pt", "best.pt", "results.md",
              "learning_curves.png", "predictions.png"]:
        assert (run / f).exists(), f"missing {f} in {run}"
    m = json.loads((run / "metrics.json").read_text())
    assert m["config"]["model"] == "unet" and m["config"]["seed"] == 0
    assert "torch" in m["versions"]
    dice = [v for k, v in m["test"]["mean"].items() if k.startswith("dice")]
    assert dice and all(0.0 <= d <= 1.0 for d in dice)
    # the executed notebook carries the printed results table
    text = out_nb.read_text()
    assert "params (M)" in text and "train time (s)" in text

@pytest.mark.parametrize("model_name", __import__("medseg_lab.models", fromlist=["MODELS"]).MODELS)
def test_every_registered_model_runs_the_experiment(repo, tmp_path, model_name, run_experiment):
    "Every model in the registry trains and evaluates through the papermill experiment (tiny preset, phantom)."
    _, runs = run_experiment("train_eval", model=model_name, preset="tiny", data="phantom", epochs=1,
                             time_budget_s=20, batch_size=4, data_kwargs={"size": 32})
    m = json.loads((runs[0] / "metrics.json").read_text())
    assert m["config"]["model"] == model_name and m["epochs_completed"] == 1

def test_train_eval_unknown_model_fails_clearly(repo, tmp_path, run_experiment):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_experiment("train_eval", model="no-such-net", preset="tiny", data="phantom", epochs=1, time_budget_s=5)
    assert "unet" in str(e.value)   # the error lists the valid model names


def test_model_zoo_equal_steps_two_seeds(repo, tmp_path, run_experiment):
    "Two tiny models, two seeds, an equal 2-step budget: the tables agree with the runs they summarise."
    import pandas as pd, numpy as np
    from medseg_lab.models import build_model
    from medseg_lab.metrics import count_params
    _, (zoo,) = run_experiment("model_zoo", models=["unet", "lgmsnet"], preset="tiny", steps=2, seeds=[0, 1],
                                batch_size=4, data_kwargs={"size": [64, 64]}, timing_steps=1, num_threads=1)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [zoo.name]   # the zoo's folder and nothing else
    for f in ["zoo_results.csv", "zoo_runs.csv", "zoo_cases.csv", "zoo_results.md", "overlays.png", "overlay-unet.png",
              "overlay-lgmsnet.png"]:
        assert (zoo / f).exists(), f"missing {f}"
    t, runs, cases = (pd.read_csv(zoo / f) for f in ("zoo_results.csv", "zoo_runs.csv", "zoo_cases.csv"))
    assert list(t.model) == ["unet", "lgmsnet"] and list(t["steps / run"]) == [2, 2] and list(t.seeds) == [2, 2]
    assert sorted(zip(runs.model, runs.seed)) == [("lgmsnet", 0), ("lgmsnet", 1), ("unet", 0), ("unet", 1)]
    assert (runs.steps == 2).all() and len(list((zoo / "runs").iterdir())) == 4        # one train() run per model and seed
    for m in ("unet", "lgmsnet"):                                                        # params of the trained configuration
        net = build_model(m, spatial_dims=2, in_channels=1, out_channels=3, preset="tiny")
        assert t.set_index("model").loc[m, "params (M)"] == pytest.approx(count_params(net) / 1e6)
    for _, r in runs.iterrows():                                                         # the run table is the runs' metrics
        mt = json.loads((zoo / "runs" / r.run / "metrics.json").read_text())
        assert mt["config"]["seed"] == r.seed and r["dice mean"] == pytest.approx(mt["test"]["mean"]["dice/mean"])
    g = runs[runs.model == "unet"]["dice mean"]                                          # mean ± std over the two seeds
    assert t.set_index("model").loc["unet", "dice mean"] == f"{g.mean():.3f} ± {g.std(ddof=1):.3f}"
    w = cases.pivot_table(index=["seed", "case"], columns="model", values="dice")       # the paired Δ, recomputed
    delta = (w.lgmsnet - w.unet).groupby(level="seed").mean().mean()
    row = t.set_index("model").loc["lgmsnet"]
    assert row["ΔDice vs unet (paired)"].startswith(f"{delta:.3f}")
    assert row["verdict"] in ("within seed spread", "better", "worse")
    md = (zoo / "zoo_results.md").read_text()
    assert "| unet |" in md and "_Measured " in md and " UTC on " in md and "seeds [0, 1]" in md


def test_model_zoo_fails_when_a_model_fails(repo, tmp_path, run_experiment, monkeypatch):
    "A registered model that breaks in training makes the zoo fail (after writing the tables without it)."
    papermill = pytest.importorskip("papermill")
    pkg = tmp_path / "brokenpkg"; pkg.mkdir()
    (pkg / "broken_net.py").write_text(
        "import torch.nn as nn\n"
        "PRESETS = {'tiny': {}}\n"
        "class Broken(nn.Module):\n"
        "    def __init__(self, spatial_dims=2, in_channels=1, out_channels=2, **kw):\n"
        "        super().__init__(); self.conv = nn.Conv2d(in_channels, out_channels, 1)\n"
        "        self.config = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels)\n"
        "    def forward(self, x, return_aux=False):\n"
        "        if self.training: raise RuntimeError('broken on purpose in training')\n"
        "        return self.conv(x)\n"
        "def build(spatial_dims=2, in_channels=1, out_channels=2, **kw): return Broken(spatial_dims, in_channels, out_channels)\n")
    startup = tmp_path / "ipython" / "profile_default" / "startup"; startup.mkdir(parents=True)
    (startup / "00-register.py").write_text(f"import sys; sys.path.insert(0, {str(pkg)!r})\n"
                                            "from medseg_lab.models import register_model\n"
                                            "register_model('brokennet', 'broken_net')\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))     # the kernel papermill starts runs the startup file
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_experiment("model_zoo", models=["unet", "brokennet"], preset="tiny", steps=1, batch_size=4,
                       data_kwargs={"size": [64, 64]}, timing_steps=1, num_threads=1)
    assert "brokennet" in str(e.value) and "broken on purpose" in str(e.value)
    (zoo,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    md = (zoo / "zoo_results.md").read_text()
    assert "| unet |" in md and "FAILED: brokennet" in md


def test_model_zoo_picks_every_registered_model_by_default(repo, tmp_path):
    "models=None means every registered model that builds: a model added to the registry joins without an edit."
    import nbformat
    nb = nbformat.read(repo / "nbs/experiments/model_zoo.ipynb", 4)
    src = "\n".join(c.source for c in nb.cells)
    assert "names = list(MODELS) if models is None" in src
    assert not any(f'"{m}"' in src for m in __import__("medseg_lab.models", fromlist=["MODELS"]).MODELS if m != "unet")


def test_train_eval_with_a_paper_recipe(repo, tmp_path, run_experiment):
    "recipe='mmunet-paper' swaps in MM-UNet's nnU-Net recipe (SGD 0.99 Nesterov, poly, CE+Dice, deep supervision)."
    _, runs = run_experiment("train_eval", model="unet", preset="tiny", data="phantom", epochs=1, time_budget_s=3,
                             data_kwargs={"size": 32}, recipe="mmunet-paper")
    c = json.loads((runs[0] / "config.json").read_text())
    assert (c["optimizer"], c["momentum"], c["nesterov"], c["weight_decay"], c["deep_supervision"]) == ("sgd", 0.99, True, 3e-5, True)
    assert c["epochs"] == 1 and c["batch_size"] == 2


def test_make_run_leaves_the_work_tree_alone(repo, tmp_path):
    "`make run` (dry run) writes only under RUNS; the README's results section changes only by `make readme-results`."
    import subprocess
    dry = lambda target: subprocess.run(["make", "-n", target, f"RUNS={tmp_path}"], cwd=repo, capture_output=True,
                                        text=True, check=True).stdout
    run = dry("run")
    assert "model_zoo.ipynb" in run and "train_eval.ipynb" in run and "exit $rc" in run   # a failed zoo fails make
    assert "index.ipynb" not in run and "README" not in run and "nbdev_clean" not in run
    for out in [w for w in run.split() if w.endswith(".ipynb") and "nbs/experiments/" not in w]:
        assert out.startswith(str(tmp_path)), out                                        # executed notebooks go to RUNS
    rr = dry("readme-results")                          # a results file, then the README re-rendered from it
    assert "save_results" in rr and "'model_zoo'" in rr and "nbexec.py nbs/index.ipynb" in rr
