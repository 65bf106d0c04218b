"""The papermill experiments run end to end with a tiny budget and leave their outputs in a run folder."""
import json, sys
from pathlib import Path
import pytest

papermill = pytest.importorskip("papermill")

def _run(repo: Path, tmp_path: Path, **params):
    out_nb = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(repo / "nbs/experiments/train_eval.ipynb"), str(out_nb),
                               parameters=dict(out_dir=str(tmp_path / "runs"), **params),
                               kernel_name="medseg_lab", cwd=str(repo / "nbs/experiments"), progress_bar=False)
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    return out_nb, runs

def test_train_eval_tiny_budget(repo, tmp_path):
    out_nb, runs = _run(repo, tmp_path, model="unet", preset="tiny", data="phantom", epochs=2,
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
def test_every_registered_model_runs_the_experiment(repo, tmp_path, model_name):
    "Every model in the registry trains and evaluates through the papermill experiment (tiny preset, phantom)."
    _, runs = _run(repo, tmp_path, model=model_name, preset="tiny", data="phantom", epochs=1,
                   time_budget_s=20, batch_size=4, data_kwargs={"size": 32})
    m = json.loads((runs[0] / "metrics.json").read_text())
    assert m["config"]["model"] == model_name and m["epochs_completed"] == 1

def test_train_eval_unknown_model_fails_clearly(repo, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        _run(repo, tmp_path, model="no-such-net", preset="tiny", data="phantom", epochs=1, time_budget_s=5)
    assert "unet" in str(e.value)   # the error lists the valid model names
