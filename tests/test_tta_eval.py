"""The TTA experiment (nbs/experiments/tta_eval.ipynb) runs end to end through papermill with a tiny budget."""
import json
import pytest

papermill = pytest.importorskip("papermill")


def test_tta_eval_tiny(repo, tmp_path, run_experiment):
    "Every adapter on two shifts (a corruption and a scanner shift) and a two-domain continual stream."
    shifts = ["gaussian_noise", "bias_field"]
    adapters = ["none", "adabn", "tent", "prompt", "duse"]
    out_nb, runs = run_experiment("tta_eval", epochs=1, time_budget_s=10, batch_size=8, n_test=3, shifts=shifts,
                                  continual=["gaussian_noise", "low_resolution"], data_kwargs={"size": [32, 32]},
                                  adapter_cfg={"prompt": {"neighbors": 1}, "duse": {"neighbors": 1}})
    assert out_nb.exists() and len(runs) == 1
    res = json.loads((runs[0] / "tta_results.json").read_text())
    got = {(r["shift"], r["adapter"]) for r in res["per_shift"]}
    assert got == {(s, a) for s in ["clean", *shifts] for a in adapters}
    for r in res["per_shift"]:
        assert r["s/image"] > 0
        for k in ("DSC", "mIoU"):
            assert r[k] != r[k] or 0.0 <= r[k] <= 1.0          # NaN (no foreground in the slices) or a score
    assert [r["adapter"] for r in res["continual"]] == adapters
    assert all("Con" in r for r in res["continual"])
    assert (runs[0] / "tta_results.md").exists()
    assert "paper DUSE DSC" in out_nb.read_text()                # the side-by-side table with the paper


def test_tta_eval_unknown_adapter_fails_clearly(repo, tmp_path, run_experiment):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_experiment("tta_eval", adapters=["none", "cotta"], epochs=1, time_budget_s=5)
    assert "valid adapters" in str(e.value)
