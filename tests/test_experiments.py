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


def test_model_zoo_tiny_budget_on_two_models(repo, tmp_path, run_experiment):
    "The zoo trains and evaluates two tiny models under an equal 2-step budget and writes the paper-style table."
    import pandas as pd
    _, (zoo,) = run_experiment("model_zoo", models=["unet", "lgmsnet"], preset="tiny", budget_steps=2, batch_size=4,
                                data_kwargs={"size": [64, 64]}, paper_presets=False, timing_steps=1, num_threads=1)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [zoo.name]   # the zoo's folder and nothing else
    assert zoo.name.startswith("model_zoo-")
    for f in ["zoo_results.csv", "zoo_results.md", "overlays.png", "overlay-unet.png", "overlay-lgmsnet.png"]:
        assert (zoo / f).exists(), f"missing {f}"
    t = pd.read_csv(zoo / "zoo_results.csv")
    assert list(t.model) == ["unet", "lgmsnet"] and list(t["steps trained"]) == [2, 2]   # the equal budget
    assert {"params (M)", "GMACs @ 1×256×256", "train s/step (CPU)", "inference s/image (CPU)", "dice lesion",
            "dice edema", "dice mean", "hd95 mean", "hd95 nan"} <= set(t.columns)
    assert (t["params (M)"] > 0).all() and (t["GMACs @ 1×256×256"] > 0).all() and (t["train s/step (CPU)"] > 0).all()
    assert t["dice mean"].between(0, 1).all()
    assert len(list((zoo / "runs").iterdir())) == 2           # one train() run folder per model
    md = (zoo / "zoo_results.md").read_text()
    assert "| unet |" in md and "_Measured " in md and " UTC on " in md


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
