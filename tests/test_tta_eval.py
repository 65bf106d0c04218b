"""The TTA experiment (nbs/experiments/tta_eval.ipynb) runs end to end through papermill with a tiny budget."""
import json
import math
import pytest

papermill = pytest.importorskip("papermill")

ADAPTERS = ["none", "adabn", "tent", "cotta", "eata", "sar", "prompt", "duse"]
TINY = dict(epochs=1, time_budget_s=5, batch_size=8, n_test=2, data_kwargs={"size": [32, 32]},
            adapter_cfg={"prompt": {"neighbors": 1}, "duse": {"neighbors": 1}, "cotta": {"n_augment": 1}})


def _results(runs_dir):
    "The tta_results.json of the one evaluation folder the run wrote."
    folders = [p for p in runs_dir.iterdir() if p.name.startswith("tta_eval-")]
    assert len(folders) == 1, folders
    return json.loads((folders[0] / "tta_results.json").read_text()), folders[0]


def test_tta_eval_all_adapters_two_seeds(repo, tmp_path, run_experiment, monkeypatch):
    "All eight adapters, two seeds, two shifts at two severities, a two-domain stream; the results file with --save."
    monkeypatch.setenv("MEDSEG_LAB_RESULTS", str(tmp_path / "results"))
    shifts, severities = ["gaussian_noise", "bias_field"], [3, 5]
    out_nb, _ = run_experiment("tta_eval", seeds=[0, 1], shifts=shifts, severities=severities,
                               continual=["gaussian_noise-5", "bias_field-3"], save=True, **TINY)
    res, folder = _results(tmp_path / "runs")
    domains = ["clean"] + [f"{k}-{v}" for k in shifts for v in severities]
    assert res["domains"] == domains and res["adapters"] == ADAPTERS and res["seeds"] == [0, 1]
    got = {(r["seed"], r["domain"], r["adapter"]) for r in res["runs"]}
    assert got == {(s, d, a) for s in (0, 1) for d in [*domains, "Con"] for a in ADAPTERS}
    for r in res["runs"]:
        n = 2 * 2 if r["domain"] == "Con" else 2                      # the stream holds both domains' cases
        assert len(r["dice"]) == n and len(r["hd95"]) == n and r["seconds_per_image"] > 0
        assert all(0.0 <= d <= 1.0 for d in r["dice"])               # every chosen case has foreground: no NaN
        assert all(h >= 0.0 and math.isfinite(h) for h in r["hd95"])  # a missed lesion scores the diagonal, not NaN
    eata = [r for r in res["runs"] if r["adapter"] == "eata"]
    assert all("selected_fraction" in r for r in eata)
    assert all("n_recoveries" in r for r in res["runs"] if r["adapter"] == "sar")
    text = out_nb.read_text()
    for needle in ("Source Only", "DUSE", "mean shifted", "±", "Wilcoxon p", "paper OD/OC Con", "s / image"):
        assert needle in text, needle
    assert (folder / "tta_results.md").exists()
    rec = json.loads((tmp_path / "results" / "tta_eval.json").read_text())   # save=True: the results file
    assert rec["notebook"] == "tta_eval" and "-p setting real" in rec["command"]
    assert rec["setting"]["seeds"] == [0, 1] and len(rec["results"]["runs"]) == len(res["runs"])


def test_tta_eval_folder_target(repo, tmp_path, run_experiment):
    "A data-set folder as source and as a further target, read through medseg_lab.train.build_data."
    data = pytest.importorskip("medseg_lab.data")
    from medseg_lab.train import TrainConfig
    if not hasattr(data, "write_sample_folder"):
        pytest.skip("medseg_lab.data.write_sample_folder (data-set folders) is not available in this checkout")
    folder = data.write_sample_folder(tmp_path / "site", layout="folder2d", n_cases=8, n_test=4)
    try: TrainConfig(model="cnmunet", preset="tiny", data=str(folder))
    except (ValueError, TypeError) as e: pytest.skip(f"TrainConfig does not take a data-set folder here: {e}")
    run_experiment("tta_eval", data=str(folder), data_kwargs={}, targets={"site": str(folder)},
                   shifts=["contrast"], continual=["contrast-5"], adapters=["none", "adabn", "duse"],
                   **{k: v for k, v in TINY.items() if k != "data_kwargs"})
    res, _ = _results(tmp_path / "runs")
    assert "site" in res["domains"] and {r["domain"] for r in res["runs"]} >= {"site", "clean", "contrast-5", "Con"}


def test_tta_eval_bad_parameters_fail_clearly(repo, tmp_path, run_experiment):
    for params, message in ((dict(adapters=["none", "memo"]), "valid adapters"),
                            (dict(shifts=["fog"]), "unknown shift 'fog'"),
                            (dict(severities=[6]), "severities must be integers in 1..5"),
                            (dict(continual=["fog-5"]), "is not one of the shifted domains"),
                            (dict(setting="huge"), "setting must be 'ci' or 'real'")):
        with pytest.raises(papermill.PapermillExecutionError) as e:
            run_experiment("tta_eval", epochs=1, time_budget_s=2, **params)
        assert message in str(e.value), (params, str(e.value)[-500:])
